#!/usr/bin/env bash
# Secret put and get throughput through the native API on loopback, measured with wrk.
#
#   cargo xtask bench              # builds the production binary, starts PostgreSQL, runs this
#   BIN=target/production/chaperone bench/secrets.sh     # SQLite only, unless
#   CHAPERONE_BENCH_POSTGRES_URL=postgres://... bench/secrets.sh
#
# Knobs: DURATION (default 10s), CONNECTIONS (default 16), THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/production/chaperone}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
[ -x "$BIN" ] || { echo "$BIN is missing: cargo build --profile production -p chaperone" >&2; exit 1; }

work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_listening() { # $1 = log file
  for _ in $(seq 100); do grep -q '^Listening on' "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "server did not start:" >&2; cat "$1" >&2; exit 1
}

cat > "$work/put.lua" <<'LUA'
local n = 0
wrk.method = "PUT"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("CHAPERONE_TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"data":{"password":"bench-value-0123456789abcdef","user":"app"}}'
request = function()
  n = n + 1
  return wrk.format(nil, "/api/v1/secrets/data/bench/put/" .. (n % 1000))
end
LUA
cat > "$work/get.lua" <<'LUA'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("CHAPERONE_TOKEN")
LUA

measure() { # $1 = backend name, $2 = address
  local addr=$2
  curl -sf -X PUT -H "Authorization: Bearer $CHAPERONE_TOKEN" \
    -d '{"data":{"password":"bench-value-0123456789abcdef"}}' "$addr/api/v1/secrets/data/bench/get" >/dev/null
  local rss
  rss=$(ps -o rss= -p "$server_pid" | tr -d ' ')
  for op in put get; do
    local url="$addr/api/v1/secrets/data/bench/get"
    [ "$op" = put ] && url="$addr/"
    local out rps p99
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/$op.lua" "$url")
    if echo "$out" | grep -q 'Non-2xx'; then echo "$out" >&2; echo "errors during $op" >&2; exit 1; fi
    rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    printf '%-10s %-4s %10s req/s   p99 %8s   (idle RSS %s KiB)\n' "$1" "$op" "$rps" "$p99" "$rss"
  done
}

# SQLite, through `chaperone up`.
port=$(free_port)
"$BIN" up --data "$work/sqlite" --listen "127.0.0.1:$port" >"$work/sqlite.log" 2>&1 &
server_pid=$!
wait_listening "$work/sqlite.log"
sleep 1
CHAPERONE_TOKEN=$(cat "$work/sqlite/admin.token") measure sqlite "http://127.0.0.1:$port"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=

# PostgreSQL, through `chaperone init` + `server` + `unseal`.
if [ -n "${CHAPERONE_BENCH_POSTGRES_URL:-}" ]; then
  port=$(free_port)
  init=$("$BIN" init --shares 1 --threshold 1 --database-url "$CHAPERONE_BENCH_POSTGRES_URL")
  share=$(echo "$init" | awk '/^Unseal share 1:/ {print $4}')
  token=$(echo "$init" | awk '/^Initial admin token:/ {print $4}')
  CHAPERONE_LOG=warn "$BIN" server --database-url "$CHAPERONE_BENCH_POSTGRES_URL" --listen "127.0.0.1:$port" \
    >"$work/pg.log" 2>&1 &
  server_pid=$!
  wait_listening "$work/pg.log"
  echo "$share" | CHAPERONE_ADDR="http://127.0.0.1:$port" "$BIN" unseal >/dev/null
  sleep 1
  CHAPERONE_TOKEN=$token measure postgres "http://127.0.0.1:$port"
fi
