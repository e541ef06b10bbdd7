//! Ledger benchmarks (`cargo bench -p chaperone-store --bench ledger`):
//!
//! 1. durable appends per second with group commit, 256 concurrent appenders, on SQLite (a
//!    file in the system temp directory, `synchronous = FULL`) and on PostgreSQL when
//!    `CHAPERONE_BENCH_POSTGRES_URL` is set (`cargo xtask bench` sets it);
//! 2. inclusion-proof generation at 1M entries (tile reads plus hashing), per proof;
//! 3. full verification of 1M entries ([`Audit`] over the entry bundles and level-0 tiles)
//!    against SHA-256 over the same entry bytes.
//!
//! `CHAPERONE_BENCH_ENTRIES` changes the 1M; `CHAPERONE_BENCH_SECS` the append duration (5).
//! Prints one line per figure; see `docs/performance.md` for the figures on the reference
//! machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chaperone_ledger::audit::{Audit, BundleInput};
use chaperone_ledger::entry::{Actor, Event, Outcome};
use chaperone_ledger::merkle;
use chaperone_ledger::tiles::{TileId, TileKind, split_bundle, split_tile};
use chaperone_store::{DatabaseUrl, Store};
use sha2::{Digest, Sha256};

fn event(i: u64) -> Event {
    Event {
        time: "2026-11-25T12:00:00.000000000Z".into(),
        actor: Actor {
            person: Some("per_0123456789abcdef".into()),
            vendor: Some("ven_0123456789abcdef".into()),
            token: Some("tok_0123456789abcdef".into()),
        },
        action: "secret.read".into(),
        resource: format!("team/payments/db/{}", i % 1000),
        outcome: Outcome::Success,
        reasons: Vec::new(),
        request_id: format!("req_{i:016x}"),
        client_ip: Some("203.0.113.7".into()),
        user_agent: Some("chaperone-cli/0.1".into()),
        details: Default::default(),
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn appends(label: &str, store: &Store, secs: u64) {
    const APPENDERS: u64 = 256;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for a in 0..APPENDERS {
        let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = a;
            while !stop.load(Ordering::Relaxed) {
                store.append_events(vec![event(i)]).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                i += APPENDERS;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "appends/{label}: {:.0} durable appends/s ({n} by {APPENDERS} concurrent appenders in {elapsed:.1} s)",
        n as f64 / elapsed
    );
}

async fn fill(store: &Store, entries: u64) {
    let have = store.ledger_size().await.unwrap();
    let mut next = have;
    while next < entries {
        let batch: Vec<Vec<u8>> = (next..(next + 8192).min(entries))
            .map(|i| event(i).to_entry(i))
            .collect();
        next += batch.len() as u64;
        store.append_ledger(batch).await.unwrap();
    }
}

async fn proofs(store: &Store, size: u64) {
    const PROOFS: u64 = 2000;
    let start = Instant::now();
    let mut checksum = 0u8;
    for k in 0..PROOFS {
        let index = (k * 2_654_435_761) % size;
        let needed = merkle::nodes_needed(|r| merkle::inclusion_proof(index, size, r));
        let tiles = store.ledger_tiles_for(&needed).await.unwrap();
        let proof = merkle::inclusion_proof(index, size, &tiles).unwrap();
        checksum ^= proof[0][0];
    }
    let per = start.elapsed() / PROOFS as u32;
    println!(
        "proof: {:.3} ms per inclusion proof at {size} entries (tiles read from SQLite; {PROOFS} proofs; {checksum})",
        per.as_secs_f64() * 1e3
    );
}

async fn verification(store: &Store, size: u64) {
    // Read everything first: the figure is the verifier's work, not the database's.
    let mut bundles = Vec::new();
    let mut tiles = Vec::new();
    for index in 0..size.div_ceil(256) {
        let width = (size - index * 256).min(256);
        let b = TileId {
            kind: TileKind::Entries,
            index,
            width,
        };
        let t = TileId {
            kind: TileKind::Hashes(0),
            index,
            width,
        };
        bundles.push(store.ledger_tile(b).await.unwrap().unwrap());
        tiles.push(split_tile(0, index, &store.ledger_tile(t).await.unwrap().unwrap()).unwrap());
    }
    let bytes: u64 = bundles
        .iter()
        .enumerate()
        .map(|(i, b)| {
            split_bundle(i as u64, b)
                .unwrap()
                .iter()
                .map(|e| e.len() as u64)
                .sum::<u64>()
        })
        .sum();

    let start = Instant::now();
    let mut audit = Audit::new(size, &[]);
    let inputs: Vec<BundleInput<'_>> = bundles
        .iter()
        .zip(&tiles)
        .enumerate()
        .map(|(i, (data, tile))| BundleInput {
            index: i as u64,
            width: (size - i as u64 * 256).min(256),
            data,
            leaf_tile: Some(tile),
        })
        .collect();
    // As `chaperone ledger verify` feeds them: 64 bundles at a time.
    for part in inputs.chunks(64) {
        audit.bundles(part).unwrap();
    }
    let root = audit.finish().unwrap().root;
    let verify = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut hasher = Sha256::new();
    for (i, data) in bundles.iter().enumerate() {
        for entry in split_bundle(i as u64, data).unwrap() {
            hasher.update(entry);
        }
    }
    let digest = hasher.finalize();
    let sha = start.elapsed().as_secs_f64();
    let mb = bytes as f64 / 1e6;
    println!(
        "verify: {size} entries ({mb:.0} MB) in {verify:.2} s = {:.0} MB/s; SHA-256 over the same bytes {:.0} MB/s; ratio {:.2} ({}{})",
        mb / verify,
        mb / sha,
        sha / verify,
        root[0],
        digest[0]
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let secs = env_u64("CHAPERONE_BENCH_SECS", 5);
    let entries = env_u64("CHAPERONE_BENCH_ENTRIES", 1_000_000);
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseUrl::sqlite_file(&dir.path().join("bench.db")))
            .await
            .unwrap();
        appends("sqlite", &store, secs).await;
        if let Ok(url) = std::env::var("CHAPERONE_BENCH_POSTGRES_URL") {
            let pg = Store::connect(&DatabaseUrl::parse(&url).unwrap())
                .await
                .unwrap();
            appends("postgres", &pg, secs).await;
            pg.close().await;
        }
        let big = Store::connect(&DatabaseUrl::sqlite_file(&dir.path().join("big.db")))
            .await
            .unwrap();
        let start = Instant::now();
        fill(&big, entries).await;
        println!(
            "fill: {entries} entries in {:.1} s",
            start.elapsed().as_secs_f64()
        );
        proofs(&big, entries).await;
        verification(&big, entries).await;
        big.close().await;
        store.close().await;
    });
}
