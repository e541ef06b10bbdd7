-- wrk: KV v2 writes over 1,000 rotating keys with the token in BENCH_TOKEN
-- (bench/vault.sh, bench/ab.sh).
local n = 0
wrk.method = "POST"
wrk.headers["X-Vault-Token"] = os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"data":{"password":"bench-value-0123456789abcdef","user":"app"}}'
request = function()
  n = n + 1
  return wrk.format(nil, "/v1/secret/data/bench/write/" .. (n % 1000))
end
