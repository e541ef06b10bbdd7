#!/usr/bin/env bash
# Two Chaperone builds A/B on this machine: both servers up (`up`, SQLite), the same wrk run
# alternated between them for ROUNDS rounds, then the medians of req/s and of the server's
# CPU time per request (user + system, from /proc). CPU per request varies much less than
# req/s on a shared machine, which is why the changes in docs/performance.md are measured so.
#
#   git stash; cargo build --release; cp target/release/chaperone /tmp/a
#   git stash pop; cargo build --release; cp target/release/chaperone /tmp/b
#   bench/ab.sh /tmp/a /tmp/b read
#
# OP: read (Vault KV v2 read of one secret, admin token), write (over 1,000 rotating keys),
# metadata (Vault metadata read), health (`sys/health`), contractor (a read by a contractor
# with a break-glass grant, logged in with password and TOTP), compliance (the same read on a
# `confidential` path, whose level asks for the vendor's NDA, on file).
# Knobs: ROUNDS (6), DURATION (4s), CONNECTIONS (32), THREADS (2).
set -euo pipefail
A=${1:?usage: bench/ab.sh BINARY_A BINARY_B [read|write|metadata|health|contractor|compliance]}
B=${2:?usage: bench/ab.sh BINARY_A BINARY_B [read|write|metadata|health|contractor|compliance]}
OP=${3:-read}
A=$(realpath "$A")
B=$(realpath "$B")
cd "$(dirname "$0")/.."
case $OP in
  read | write | metadata | health | contractor | compliance) ;;
  *) echo "unknown OP $OP: read, write, metadata, health, contractor or compliance" >&2; exit 2 ;;
esac
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-4s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The current TOTP code of a base32 secret (RFC 6238: SHA-1, 30 s, 6 digits).
totp() {
  python3 - "$1" <<'PY'
import base64, hashlib, hmac, struct, sys, time
secret = sys.argv[1]
key = base64.b32decode(secret + "=" * (-len(secret) % 8))
digest = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
offset = digest[-1] & 15
print("%06d" % ((struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1000000))
PY
}

# Starts binary $2 as server $1 in $work/$1 and writes the token and path wrk uses there.
start() {
  local name=$1 bin=$2 dir=$work/$1 port
  port=$(free_port)
  mkdir -p "$dir"
  CHAPERONE_LOG=warn "$bin" up --data "$dir/data" --listen "127.0.0.1:$port" >"$dir/log" 2>&1 &
  pids+=($!)
  echo $! >"$dir/pid"
  echo "http://127.0.0.1:$port" >"$dir/addr"
  for _ in $(seq 100); do grep -q '^Listening on' "$dir/log" 2>/dev/null && break; sleep 0.1; done
  local addr admin token path=/v1/secret/data/bench/read
  addr=$(cat "$dir/addr")
  admin=$(cat "$dir/data/admin.token")
  token=$admin
  curl -sf -X POST -H "X-Vault-Token: $admin" -d '{"data":{"password":"x"}}' \
    "$addr/v1/secret/data/bench/read" >/dev/null
  case $OP in
    metadata) path=/v1/secret/metadata/bench/read ;;
    health) path=/v1/sys/health ;;
    write) path=/ ;;
    contractor | compliance)
      local code secret
      export CHAPERONE_ADDR=$addr HOME=$dir/home
      CHAPERONE_TOKEN=$admin "$bin" vendor add acme --status active >/dev/null
      code=$(CHAPERONE_TOKEN=$admin "$bin" user add carol --role contractor --vendor acme --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["enrolment_code"])')
      secret=$(echo "carol-bench-password-Vb93kLm" | "$bin" enroll "$code" --password-stdin --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["totp_secret"])')
      echo "carol-bench-password-Vb93kLm" | "$bin" login carol --password-stdin --totp "$(totp "$secret")" >/dev/null
      token=$(cat "$(find "$dir/home" -name token -path '*chaperone*' | head -1)")
      if [ "$OP" = compliance ]; then
        CHAPERONE_TOKEN=$admin "$bin" agreement add acme --kind nda --signed 2026-01-01 >/dev/null
        CHAPERONE_TOKEN=$admin "$bin" agreement add acme --kind dpa --signed 2026-01-01 >/dev/null
        CHAPERONE_TOKEN=$admin "$bin" classification set acme/ confidential >/dev/null
      fi
      CHAPERONE_TOKEN=$admin "$bin" grant break-glass carol acme/ --capabilities read --ttl 4h \
        --reason "bench/ab.sh" >/dev/null
      curl -sf -X POST -H "X-Vault-Token: $admin" -d '{"data":{"password":"x"}}' \
        "$addr/v1/secret/data/acme/db" >/dev/null
      path=/v1/secret/data/acme/db
      unset CHAPERONE_ADDR
      ;;
  esac
  curl -sf -o /dev/null -H "X-Vault-Token: $token" "$addr$path" || [ "$OP" = write ] ||
    { echo "$name: $OP fails before the load" >&2; exit 1; }
  echo "$token" >"$dir/token"
  echo "$path" >"$dir/path"
}

# One wrk run against server $1: prints "req/s cpu-us-per-request".
measure() {
  local dir=$work/$1 pid out t0 t1 requests rps
  pid=$(cat "$dir/pid")
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  local script=bench/vault-read.lua
  [ "$OP" = write ] && script=bench/vault-write.lua
  out=$(BENCH_TOKEN=$(cat "$dir/token") wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$script" \
    "$(cat "$dir/addr")$(cat "$dir/path")")
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  if echo "$out" | grep -q 'Non-2xx'; then echo "$out" >&2; echo "errors from $1" >&2; exit 1; fi
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  # /proc counts clock ticks of 10 ms (CLK_TCK is 100 on Linux): 10,000 µs each.
  echo "$rps $(((t1 - t0) * 10000 / requests))"
}

start a "$A"
start b "$B"
sleep 1
for round in $(seq "$ROUNDS"); do
  for side in a b; do
    echo "$side $(measure $side)" | tee -a "$work/results"
  done
done
python3 - "$work/results" "$OP" <<'PY'
import statistics, sys
rows = {"a": [], "b": []}
for line in open(sys.argv[1]):
    side, rps, cpu = line.split()
    rows[side].append((float(rps), int(cpu)))
for side, name in (("a", "A"), ("b", "B")):
    values = rows[side]
    print(f"{name} {sys.argv[2]}: median {statistics.median(v[0] for v in values):,.0f} req/s, "
          f"median {statistics.median(v[1] for v in values)} us of server CPU per request")
PY
