-- wrk: a Vault request with the token in BENCH_TOKEN (bench/vault.sh, bench/ab.sh).
wrk.headers["X-Vault-Token"] = os.getenv("BENCH_TOKEN")
