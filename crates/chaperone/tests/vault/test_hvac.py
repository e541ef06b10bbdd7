"""hvac, the Python Vault client, against Chaperone's Vault-compatible API.

Run by `crates/chaperone/tests/vault_clients.rs`, which starts a server and passes:
VAULT_ADDR, CHAPERONE_ADMIN_TOKEN, CHAPERONE_CONTRACTOR_TOKEN (a contractor without any
grant). The tests run in file order; the sealed-server test comes last.
"""

import os
import re

import hvac
import hvac.exceptions
import pytest
import requests
from otp import totp

ADDR = os.environ["VAULT_ADDR"]
ADMIN = os.environ["CHAPERONE_ADMIN_TOKEN"]
CONTRACTOR = os.environ["CHAPERONE_CONTRACTOR_TOKEN"]
MFA_USER = os.environ["CHAPERONE_MFA_USER"]
MFA_PASSWORD = os.environ["CHAPERONE_MFA_PASSWORD"]
MFA_SECRET = os.environ["CHAPERONE_MFA_TOTP_SECRET"]


@pytest.fixture
def client():
    return hvac.Client(url=ADDR, token=ADMIN)


def kv(client):
    return client.secrets.kv.v2


ENVELOPE = {"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth"}


def test_token_is_authenticated_and_looks_itself_up(client):
    assert client.is_authenticated()
    me = client.auth.token.lookup_self()
    assert ENVELOPE <= set(me)
    assert me["data"]["id"] == ADMIN
    assert me["data"]["accessor"].startswith("tok_")
    assert me["data"]["policies"] == ["admin"]


def test_a_bad_token_is_forbidden_not_unauthorized():
    bad = hvac.Client(url=ADDR, token="chp_not-a-token")
    assert not bad.is_authenticated()
    with pytest.raises(hvac.exceptions.Forbidden):
        kv(bad).read_secret_version(path="anything", raise_on_deleted_version=True)
    response = requests.get(f"{ADDR}/v1/secret/data/anything")
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"errors": ["permission denied"]}


def test_tokens_create_lookup_renew_and_revoke(client):
    made = client.auth.token.create(ttl="1h", display_name="ci")
    assert ENVELOPE <= set(made) and made["data"] is None
    auth = made["auth"]
    assert auth["lease_duration"] == 3600 and auth["renewable"] is False
    assert auth["accessor"].startswith("tok_")
    assert auth["orphan"] is False
    child = hvac.Client(url=ADDR, token=auth["client_token"])
    assert child.is_authenticated()
    assert child.auth.token.lookup_self()["data"]["accessor"] == auth["accessor"]
    # As in Vault, tokens form a tree: revoking one revokes what was made from it.
    grandchild = hvac.Client(url=ADDR, token=child.auth.token.create(ttl="2h")["auth"]["client_token"])
    grandchild_info = grandchild.auth.token.lookup_self()["data"]
    assert grandchild_info["orphan"] is False and grandchild_info["ttl"] <= 3600
    orphan = client.auth.token.create(ttl="10m", no_parent=True)["auth"]
    assert orphan["orphan"] is True

    looked = client.auth.token.lookup(token=auth["client_token"])["data"]
    assert looked["id"] == auth["client_token"] and looked["display_name"] == "token-ci"
    by_accessor = client.auth.token.lookup_accessor(accessor=auth["accessor"])["data"]
    assert by_accessor["id"] == "" and by_accessor["accessor"] == auth["accessor"]
    renewed = child.auth.token.renew_self()
    assert renewed["auth"]["lease_duration"] <= 3600 and renewed["warnings"]

    child.auth.token.revoke_self()
    assert not child.is_authenticated()
    assert not grandchild.is_authenticated()
    assert hvac.Client(url=ADDR, token=orphan["client_token"]).is_authenticated()

    second = client.auth.token.create(ttl="10m")["auth"]
    client.auth.token.revoke_accessor(accessor=second["accessor"])
    assert not hvac.Client(url=ADDR, token=second["client_token"]).is_authenticated()
    third = client.auth.token.create(ttl="10m")["auth"]
    client.auth.token.revoke(token=third["client_token"])
    assert not hvac.Client(url=ADDR, token=third["client_token"]).is_authenticated()

    with pytest.raises(hvac.exceptions.Forbidden):
        client.auth.token.lookup(token="chp_not-a-token")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.auth.token.lookup_accessor(accessor="tok_none")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.auth.token.create(ttl="1h", num_uses=3)
    # A restriction that cannot be honoured is refused, not dropped.
    with pytest.raises(hvac.exceptions.InvalidRequest) as narrower:
        client.auth.token.create(ttl="1h", policies=["ci-readonly"])
    assert "policies are not supported" in narrower.value.errors[0]
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.auth.token.create(ttl="1h", period="24h")
    assert client.auth.token.create(ttl="1h", policies=["default"])["auth"]["lease_duration"] == 3600
    assert client.auth.token.create(ttl="1h", explicit_max_ttl="10m")["auth"]["lease_duration"] == 600


def test_userpass_login_needs_the_totp_code_in_the_mfa_header():
    plain = hvac.Client(url=ADDR)
    with pytest.raises(hvac.exceptions.InvalidRequest) as no_code:
        plain.auth.userpass.login(username=MFA_USER, password=MFA_PASSWORD)
    assert "X-Vault-MFA" in no_code.value.errors[0]
    with pytest.raises(hvac.exceptions.InvalidRequest) as wrong:
        plain.auth.userpass.login(username=MFA_USER, password="not-the-password")
    assert wrong.value.errors == ["invalid username or password"]

    session = requests.Session()
    session.headers["X-Vault-MFA"] = f"totp:{totp(MFA_SECRET)}"
    mfa = hvac.Client(url=ADDR, session=session)
    login = mfa.auth.userpass.login(username=MFA_USER, password=MFA_PASSWORD)
    assert login["auth"]["metadata"] == {"username": MFA_USER}
    assert login["auth"]["policies"] == ["contractor"]
    user = hvac.Client(url=ADDR, token=login["auth"]["client_token"])
    assert user.is_authenticated()
    # The token keeps naming its user, as a userpass token does.
    looked_up = user.auth.token.lookup_self()["data"]
    assert looked_up["meta"] == {"username": MFA_USER}
    assert looked_up["path"] == f"auth/userpass/login/{MFA_USER}"
    # A token made with the session ends with it; only an admin may make an orphan.
    made = hvac.Client(url=ADDR, token=user.auth.token.create(ttl="1h")["auth"]["client_token"])
    assert made.auth.token.lookup_self()["data"]["policies"] == ["contractor"]
    with pytest.raises(hvac.exceptions.InvalidRequest) as orphan:
        user.auth.token.create(ttl="1h", no_parent=True)
    assert orphan.value.errors == ["root or sudo privileges required to create orphan token"]
    user.auth.token.revoke_self()
    assert not user.is_authenticated() and not made.is_authenticated()
    # The same code a second time is a replay.
    with pytest.raises(hvac.exceptions.VaultError):
        mfa.auth.userpass.login(username=MFA_USER, password=MFA_PASSWORD)


def test_health_seal_status_init_and_mounts(client):
    health = client.sys.read_health_status(method="GET")
    assert health["initialized"] is True and health["sealed"] is False
    # Status-code overrides, and HEAD without a body.
    response = requests.get(f"{ADDR}/v1/sys/health?activecode=299")
    assert response.status_code == 299
    # An informational code cannot end an answer: the health comes with 200, as the clients
    # of OpenBao's Go server see it after the interim line.
    response = requests.get(f"{ADDR}/v1/sys/health?activecode=100")
    assert response.status_code == 200 and response.json()["sealed"] is False
    head = requests.head(f"{ADDR}/v1/sys/health")
    assert head.status_code == 200 and head.content == b""
    status = client.sys.read_seal_status()
    assert status["sealed"] is False and status["type"] == "shamir"
    assert client.sys.is_initialized() is True
    mounts = client.sys.list_mounted_secrets_engines()
    assert mounts["data"]["secret/"]["type"] == "kv"
    assert mounts["data"]["secret/"]["options"] == {"version": "2"}
    ui = client.adapter.get("/v1/sys/internal/ui/mounts/secret/app/db")
    assert ui["data"]["path"] == "secret/" and ui["data"]["options"]["version"] == "2"


def test_write_read_versions_and_metadata(client):
    written = kv(client).create_or_update_secret(path="hvac/app", secret={"user": "app", "n": 1})
    assert ENVELOPE <= set(written)
    assert written["data"]["version"] == 1
    assert written["data"]["deletion_time"] == ""
    assert written["data"]["destroyed"] is False
    kv(client).create_or_update_secret(path="hvac/app", secret={"user": "app2"}, cas=1)

    read = kv(client).read_secret_version(path="hvac/app", raise_on_deleted_version=True)
    assert read["data"]["data"] == {"user": "app2"}
    meta = read["data"]["metadata"]
    assert meta["version"] == 2 and meta["deletion_time"] == "" and meta["custom_metadata"] is None
    # created_time is RFC 3339 with nanoseconds, trailing zeros trimmed as Go prints them.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", meta["created_time"])
    old = kv(client).read_secret_version(path="hvac/app", version=1, raise_on_deleted_version=True)
    assert old["data"]["data"] == {"user": "app", "n": 1}

    kv(client).update_metadata(path="hvac/app", max_versions=5, custom_metadata={"owner": "payments"})
    metadata = kv(client).read_secret_metadata(path="hvac/app")["data"]
    assert metadata["current_version"] == 2
    assert metadata["max_versions"] == 5
    assert metadata["custom_metadata"] == {"owner": "payments"}
    assert set(metadata["versions"]) == {"1", "2"}
    assert metadata["versions"]["1"]["destroyed"] is False


def test_check_and_set_failures_have_vaults_messages(client):
    kv(client).create_or_update_secret(path="hvac/cas", secret={"v": "1"}, cas=0)
    with pytest.raises(hvac.exceptions.InvalidRequest) as mismatch:
        kv(client).create_or_update_secret(path="hvac/cas", secret={"v": "2"}, cas=0)
    assert mismatch.value.errors == ["check-and-set parameter did not match the current version"]
    kv(client).update_metadata(path="hvac/cas", cas_required=True)
    with pytest.raises(hvac.exceptions.InvalidRequest) as required:
        kv(client).create_or_update_secret(path="hvac/cas", secret={"v": "2"})
    assert required.value.errors == ["check-and-set parameter required for this call"]
    kv(client).create_or_update_secret(path="hvac/cas", secret={"v": "2"}, cas=1)


def test_patch_merges_at_every_depth_and_honours_check_and_set(client):
    url = f"{ADDR}/v1/secret/data/hvac/patch"
    headers = {"X-Vault-Token": ADMIN, "Content-Type": "application/merge-patch+json"}
    kv(client).create_or_update_secret(
        path="hvac/patch", secret={"db": {"user": "u", "password": "p"}, "note": "a"}
    )
    patched = requests.patch(url, headers=headers, json={"data": {"db": {"password": "x"}, "note": None}})
    assert patched.status_code == 200, patched.text
    read = kv(client).read_secret_version(path="hvac/patch", raise_on_deleted_version=True)
    assert read["data"]["data"] == {"db": {"user": "u", "password": "x"}}
    # A secret that requires check-and-set requires it of a patch too.
    kv(client).update_metadata(path="hvac/patch", cas_required=True)
    required = requests.patch(url, headers=headers, json={"data": {"note": "b"}})
    assert required.status_code == 400
    assert required.json()["errors"] == ["check-and-set parameter required for this call"]
    given = requests.patch(url, headers=headers, json={"data": {"note": "b"}, "options": {"cas": 2}})
    assert given.status_code == 200, given.text


def test_custom_metadata_keeps_vaults_limits(client):
    kv(client).create_or_update_secret(path="hvac/meta-limits", secret={"v": "1"})
    for too_much in ({f"k{i}": "v" for i in range(65)}, {"k": "v" * 513}, {"k" * 129: "v"}):
        with pytest.raises(hvac.exceptions.InvalidRequest):
            kv(client).update_metadata(path="hvac/meta-limits", custom_metadata=too_much)
    most = {f"k{i}": "v" * 512 for i in range(64)}
    kv(client).update_metadata(path="hvac/meta-limits", custom_metadata=most)
    assert kv(client).read_secret_metadata(path="hvac/meta-limits")["data"]["custom_metadata"] == most


def test_delete_undelete_destroy(client):
    kv(client).create_or_update_secret(path="hvac/del", secret={"v": "1"})
    kv(client).create_or_update_secret(path="hvac/del", secret={"v": "2"})
    kv(client).delete_latest_version_of_secret(path="hvac/del")
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(client).read_secret_version(path="hvac/del", raise_on_deleted_version=True)
    # A deleted version is a 404 carrying the whole envelope.
    response = requests.get(f"{ADDR}/v1/secret/data/hvac/del", headers={"X-Vault-Token": ADMIN})
    assert response.status_code == 404
    body = response.json()
    assert ENVELOPE <= set(body)
    assert body["data"]["data"] is None
    assert body["data"]["metadata"]["deletion_time"] != ""
    deleted = kv(client).read_secret_version(path="hvac/del", raise_on_deleted_version=False)
    assert deleted["data"]["data"] is None

    kv(client).undelete_secret_versions(path="hvac/del", versions=[2])
    assert kv(client).read_secret_version(path="hvac/del", raise_on_deleted_version=True)["data"]["data"] == {"v": "2"}

    kv(client).destroy_secret_versions(path="hvac/del", versions=[1])
    versions = kv(client).read_secret_metadata(path="hvac/del")["data"]["versions"]
    assert versions["1"]["destroyed"] is True
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(client).read_secret_version(path="hvac/del", version=1, raise_on_deleted_version=True)

    kv(client).delete_metadata_and_all_versions(path="hvac/del")
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(client).read_secret_metadata(path="hvac/del")


def test_response_wrapping_hands_out_once(client):
    kv(client).create_or_update_secret(path="hvac/wrapped", secret={"api_key": "k-123"})
    wrapped = client.adapter.get("/v1/secret/data/hvac/wrapped", wrap_ttl="60s")
    assert wrapped["data"] is None
    info = wrapped["wrap_info"]
    assert info["ttl"] == 60 and info["creation_path"] == "secret/data/hvac/wrapped"
    props = client.adapter.post("/v1/sys/wrapping/lookup", json={"token": info["token"]})["data"]
    assert props["creation_path"] == "secret/data/hvac/wrapped" and props["creation_ttl"] == 60

    # Anyone holding the wrapping token unwraps it, once.
    holder = hvac.Client(url=ADDR, token=info["token"])
    unwrapped = holder.sys.unwrap()
    assert unwrapped["data"]["data"] == {"api_key": "k-123"}
    with pytest.raises(hvac.exceptions.InvalidRequest) as again:
        hvac.Client(url=ADDR, token=ADMIN).sys.unwrap(token=info["token"])
    assert again.value.errors == ["wrapping token is not valid or does not exist"]

    made = client.sys.wrap(payload={"note": "hi"}, ttl=120)
    assert made["wrap_info"]["ttl"] == 120
    assert client.sys.unwrap(token=made["wrap_info"]["token"])["data"] == {"note": "hi"}
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.adapter.post("/v1/sys/wrapping/wrap", json={"note": "hi"})


def test_list(client):
    for name in ("a", "b", "dir/c"):
        kv(client).create_or_update_secret(path=f"hvac/list/{name}", secret={"v": name})
    keys = kv(client).list_secrets(path="hvac/list")["data"]["keys"]
    assert keys == ["a", "b", "dir/"]
    # The `?list=true` form answers the same.
    response = requests.get(
        f"{ADDR}/v1/secret/metadata/hvac/list?list=true", headers={"X-Vault-Token": ADMIN}
    )
    assert response.json()["data"]["keys"] == ["a", "b", "dir/"]
    # hvac's generic list sends `?list=True`.
    assert client.list("secret/metadata/hvac/list")["data"]["keys"] == ["a", "b", "dir/"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(client).list_secrets(path="hvac/nothing-here")


def test_config(client):
    config = kv(client).read_configuration()["data"]
    assert config["max_versions"] > 0 and config["cas_required"] is False


def test_a_contractor_without_a_grant_is_forbidden(client):
    kv(client).create_or_update_secret(path="acme/app/db", secret={"password": "p"})
    contractor = hvac.Client(url=ADDR, token=CONTRACTOR)
    assert contractor.is_authenticated()
    with pytest.raises(hvac.exceptions.Forbidden):
        kv(contractor).read_secret_version(path="acme/app/db", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv(contractor).create_or_update_secret(path="acme/app/db", secret={"password": "x"})


def test_unknown_routes_answer_with_errors(client):
    response = requests.get(f"{ADDR}/v1/nope/thing", headers={"X-Vault-Token": ADMIN})
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert isinstance(response.json()["errors"], list)


def test_zz_a_sealed_server_answers_503(client):
    response = requests.post(f"{ADDR}/api/v1/sys/seal", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 204
    with pytest.raises(hvac.exceptions.VaultDown):
        kv(client).read_secret_version(path="hvac/app", raise_on_deleted_version=True)
    response = requests.get(f"{ADDR}/v1/secret/data/hvac/app", headers={"X-Vault-Token": ADMIN})
    assert response.status_code == 503
    assert response.json() == {"errors": ["Vault is sealed"]}
    # Nothing is said about wrappings either.
    response = requests.post(f"{ADDR}/v1/sys/wrapping/lookup", json={"token": "chp_x"})
    assert (response.status_code, response.json()) == (503, {"errors": ["Vault is sealed"]})
    status = client.sys.read_seal_status()
    assert status["sealed"] is True
    # As a sealed OpenBao answers: no cluster in the seal status, no leader, and HEAD 503.
    assert "cluster_name" not in status and "cluster_id" not in status
    leader = requests.get(f"{ADDR}/v1/sys/leader")
    assert (leader.status_code, leader.json()) == (503, {"errors": ["Vault is sealed"]})
    assert requests.head(f"{ADDR}/v1/secret/data/hvac/app", headers={"X-Vault-Token": ADMIN}).status_code == 503
    sealed = requests.get(f"{ADDR}/v1/sys/health")
    assert sealed.status_code == 503
    # As a sealed OpenBao says it: a standby that knows nothing of its cluster.
    health = sealed.json()
    assert (health["sealed"], health["standby"], health["replication_dr_mode"]) == (True, True, "unknown")
    assert "cluster_name" not in health and "cluster_id" not in health
    assert requests.get(f"{ADDR}/v1/sys/health?sealedcode=200").status_code == 200
    # Sealing a sealed server is nothing to do, and OpenBao says so with 204 whoever asks.
    for method in (requests.put, requests.post):
        assert method(f"{ADDR}/v1/sys/seal").status_code == 204
    assert client.sys.read_seal_status()["sealed"] is True
