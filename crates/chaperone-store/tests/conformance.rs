//! The storage conformance suite: every behaviour runs once on SQLite and once on PostgreSQL.
//!
//! PostgreSQL runs when `CHAPERONE_TEST_POSTGRES_URL` points at a server where the user may
//! create databases (`cargo xtask test` starts one); each test gets its own database. When
//! `CHAPERONE_TEST_REQUIRE_POSTGRES=1` a missing URL fails the PostgreSQL tests instead of
//! skipping them.

use std::collections::BTreeMap;
use std::sync::Arc;

use chaperone_core::policy::GrantTerms;
use chaperone_core::{
    Cas, KvError, MaxVersions, SecretPath, SecretPrefix, Timestamp, VersionState,
};
use chaperone_crypto::token::ApiToken;
use chaperone_crypto::{Keyring, RootKey, UnsealKey};
use chaperone_store::{
    DatabaseUrl, DecidedOn, DocumentRecord, GrantRecord, KeyringRecord, KvSettings, MetadataUpdate,
    Op, Opened, PersonRecord, Record, SealConfig, ShareRecord, Store, StoreError, TokenKind,
    TokenRecord, VendorRecord,
};

struct Fixture {
    url: DatabaseUrl,
    /// The same database for a plain sqlx connection, to change what the store cannot.
    raw: String,
    store: Store,
    ring: Arc<Keyring>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::sqlite_file(&dir.path().join("test.db"));
    let store = Store::connect(&url).await.unwrap();
    Some(Fixture {
        raw: format!("sqlite://{}", dir.path().join("test.db").display()),
        url,
        store,
        ring: Arc::new(RootKey::generate().keyring()),
        _dir: Some(dir),
    })
}

async fn postgres() -> Option<Fixture> {
    let Ok(base) = std::env::var("CHAPERONE_TEST_POSTGRES_URL") else {
        if std::env::var("CHAPERONE_TEST_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!("CHAPERONE_TEST_REQUIRE_POSTGRES=1 but CHAPERONE_TEST_POSTGRES_URL is unset");
        }
        eprintln!("skipping: CHAPERONE_TEST_POSTGRES_URL is unset (cargo xtask test sets it)");
        return None;
    };
    let name = format!("conformance_{}", hex(&random16()));
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (root, _) = base.rsplit_once('/').expect("URL with a database name");
    let url = DatabaseUrl::parse(&format!("{root}/{name}")).unwrap();
    let store = Store::connect(&url).await.unwrap();
    Some(Fixture {
        raw: format!("{root}/{name}"),
        url,
        store,
        ring: Arc::new(RootKey::generate().keyring()),
        _dir: None,
    })
}

/// A new, empty PostgreSQL database's URL, if PostgreSQL is configured for the tests.
async fn empty_postgres() -> Option<DatabaseUrl> {
    Some(DatabaseUrl::parse(&empty_postgres_url().await?).unwrap())
}

/// [`empty_postgres`], as text.
async fn empty_postgres_url() -> Option<String> {
    let base = std::env::var("CHAPERONE_TEST_POSTGRES_URL").ok()?;
    let name = format!("empty_{}", hex(&random16()));
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (root, _) = base.rsplit_once('/').unwrap();
    Some(format!("{root}/{name}"))
}

/// Several nodes started at once on an empty database all come up: one migrates, the
/// others wait for it (without the lock, two would create the migrations table together and
/// one would fail on PostgreSQL's catalogue).
#[tokio::test]
async fn nodes_starting_together_on_an_empty_postgres_all_migrate() {
    if postgres().await.is_none() {
        return;
    }
    for _ in 0..5 {
        let url = empty_postgres().await.unwrap();
        let (a, b, c, d) = tokio::join!(
            Store::connect(&url),
            Store::connect(&url),
            Store::connect(&url),
            Store::connect(&url)
        );
        for node in [a, b, c, d] {
            node.expect("every node starts").close().await;
        }
    }
}

/// Two nodes appending at once on a database whose default isolation is SERIALIZABLE (a
/// common hardening setting) lose nothing: the store sets READ COMMITTED itself, which the
/// nodes' turn-taking on the ledger head relies on.
#[tokio::test]
async fn nodes_append_together_under_a_serializable_default() {
    if postgres().await.is_none() {
        return;
    }
    let url = empty_postgres_url().await.unwrap();
    let strict = DatabaseUrl::parse(&format!(
        "{url}?options=-c%20default_transaction_isolation%3Dserializable"
    ))
    .unwrap();
    let (a, b) = (
        Store::connect(&strict).await.unwrap(),
        Store::connect(&strict).await.unwrap(),
    );
    let append = |store: Store| async move {
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.append_events(vec![event("node.write")]).await
            }));
        }
        for task in tasks {
            task.await.unwrap().expect("every append commits");
        }
        store
    };
    let (a, b) = tokio::join!(append(a), append(b));
    assert_eq!(a.ledger_size().await.unwrap(), 80);
    a.close().await;
    b.close().await;
}

/// A node that stops inside a transaction holding the ledger head (a paused machine) stalls
/// the others for a bounded time: a lock is waited for at most `lock_timeout`, and the
/// stopped node's transaction, idle past `idle_in_transaction_session_timeout`, is ended by
/// PostgreSQL, which releases the lock.
#[tokio::test]
async fn a_node_stopped_in_a_transaction_stalls_the_others_only_for_a_while() {
    use sqlx::Connection;
    if postgres().await.is_none() {
        return;
    }
    let raw = empty_postgres_url().await.unwrap();
    let store = Store::connect(&DatabaseUrl::parse(&raw).unwrap())
        .await
        .unwrap();
    let hold = |settings: &'static [&'static str]| {
        let raw = raw.clone();
        async move {
            let mut conn = sqlx::AnyConnection::connect(&raw).await.unwrap();
            for setting in settings {
                sqlx::query(setting).execute(&mut conn).await.unwrap();
            }
            sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
            sqlx::query("SELECT size FROM ledger_head WHERE id = 1 FOR UPDATE")
                .execute(&mut conn)
                .await
                .unwrap();
            conn
        }
    };
    // A holder that never lets go (no timeouts of its own): the append gives up on the lock
    // instead of waiting as long as the holder lives.
    let mut stuck = hold(&[]).await;
    let refused = store.append_events(vec![event("node.write")]).await;
    assert!(refused.is_err(), "{refused:?}");
    sqlx::query("ROLLBACK").execute(&mut stuck).await.unwrap();
    // A node of ours stopped with the lock: PostgreSQL ends its transaction, and the append
    // goes through.
    let mut stopped = hold(chaperone_store::POSTGRES_SESSION).await;
    store
        .append_events(vec![event("node.write")])
        .await
        .expect("the stopped node's lock is released");
    assert!(
        sqlx::query("SELECT 1").execute(&mut stopped).await.is_err(),
        "the stopped node's session was ended"
    );
    assert_eq!(store.ledger_size().await.unwrap(), 1);
    store.close().await;
}

/// A backup's snapshot stays open, idle, while pg_dump reads through it: the sessions' limit
/// on idle transactions does not end it.
#[tokio::test]
async fn a_backup_snapshot_outlives_the_idle_transaction_limit() {
    let Some(f) = postgres().await else {
        return;
    };
    let snapshot = f.store.export_snapshot().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    snapshot
        .finish()
        .await
        .expect("the snapshot was still open");
}

fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    chaperone_crypto::random_bytes(&mut b);
    b
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(f) = super::sqlite().await { super::$name(&f).await }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(f) = super::postgres().await { super::$name(&f).await }
                }
            )*
        }
    };
}

conformance!(
    versions_are_written_and_read,
    check_and_set,
    old_versions_are_pruned,
    delete_undelete_destroy,
    a_merge_needs_its_version_still_readable,
    listing_by_prefix,
    deleting_a_secret_never_reuses_its_id,
    keyring_and_tokens,
    concurrent_writers_with_the_same_cas,
    metadata_updates,
    a_closed_database_is_an_error_not_absence,
    migrations_are_idempotent,
    a_lapsed_account_is_disabled_once,
    people_vendors_and_enrolment,
    totp_steps_and_recovery_codes_are_used_once,
    grants_classifications_and_failures,
    tokens_of_people,
    token_trees_are_revoked_whole,
    the_upgrade_counts_live_sessions_as_just_used,
    ledger_appends_and_proofs,
    partial_bundles_are_appended_in_chunks,
    a_changed_upper_hash_tile_fails_the_audit,
    a_tail_changed_outside_the_committer_is_never_built_on,
    closing_commits_then_stops,
    large_batches_keep_each_change_apart,
    changes_and_their_events_commit_together,
    identity_and_token_changes_record_only_what_happened,
    wrapped_responses_are_taken_once,
    two_stores_append_to_one_log,
    governance_records_are_revisioned_and_atomic,
    records_are_revised_by_what_they_hold_as_the_change_runs,
    shares_are_opened_a_counted_number_of_times_and_destroyed,
    cached_reads_follow_every_change,
    failed_attempts_keep_the_caches_and_old_ones_go,
    expired_wrapped_responses_are_purged,
    wrapped_responses_are_held_to_their_makers_quota,
    a_persons_live_tokens_are_bounded,
    an_account_keeps_its_recent_login_networks,
    a_key_under_a_retired_generation_is_not_stored,
);

/// Once a key-encryption-key generation is recorded complete, a blob sealed under an older
/// one (by a PostgreSQL node paused through the rotation) is refused; before, it is stored
/// for the re-wrapping pass to take. SQLite's one process needs no such check.
async fn a_key_under_a_retired_generation_is_not_stored(f: &Fixture) {
    let record = KeyringRecord {
        kek_generation: 0,
        rewrapped_generation: 0,
        wrapped_root_key: RootKey::generate().wrap(&UnsealKey::generate()),
        seal: SealConfig::Shamir {
            shares: 1,
            threshold: 1,
        },
        created_at: t(1),
        share_digests: vec![format!("{:064x}", 1)],
    };
    let admin = api_token("tok_admin", "initial admin", "admin");
    f.store
        .initialize(&record, &admin, ("log.example/k", b"seed"), &[])
        .await
        .unwrap();
    let rotated = path("rotated");
    let write = |n: i64| {
        f.store.put_version(
            &rotated,
            Cas::None,
            KvSettings::default(),
            t(n),
            &[],
            seal(f, b"under generation 0"),
        )
    };
    // Rotating: still stored, for the pass to re-wrap.
    assert_eq!(f.store.start_kek_generation(0, &[]).await.unwrap(), 1);
    write(2).await.unwrap();
    assert!(f.store.finish_kek_generation(1, &[]).await.unwrap());
    let late = write(3).await;
    match f.url.backend() {
        chaperone_store::Backend::Postgres => {
            assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
            let stored = f.store.metadata(&rotated).await.unwrap().unwrap();
            assert_eq!(stored.current_version, 1, "nothing was written");
        }
        chaperone_store::Backend::Sqlite => {
            late.unwrap();
        }
    }
}

fn path(p: &str) -> SecretPath {
    SecretPath::parse(p).unwrap()
}

fn t(n: i64) -> Timestamp {
    Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + n)
}

const DEFAULTS: KvSettings = KvSettings {
    max_versions: MaxVersions::DEFAULT,
    cas_required: false,
};

/// Seals `value` with the fixture's keyring for the binding the store gives it.
fn seal(
    f: &Fixture,
    value: &[u8],
) -> impl FnOnce(chaperone_crypto::Binding) -> chaperone_crypto::SealedValue + Send + 'static {
    let (ring, value) = (Arc::clone(&f.ring), value.to_vec());
    move |b| ring.seal(b, &value)
}

/// An API token created at `t(1)`, with a fresh hash, no expiry and no person.
fn api_token(id: &str, name: &str, role: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        hash: ApiToken::generate().hash(),
        name: name.into(),
        role: role.into(),
        created_at: t(1),
        expires_at: None,
        revoked_at: None,
        person_id: None,
        kind: TokenKind::Api,
        scope: None,
        mfa_verified_at: None,
        parent_id: None,
        last_used_at: None,
        meta: Default::default(),
    }
}

async fn put(f: &Fixture, p: &str, value: &str, cas: Cas) -> Result<u64, StoreError> {
    f.store
        .put_version(
            &path(p),
            cas,
            DEFAULTS,
            t(1),
            &[],
            seal(f, value.as_bytes()),
        )
        .await
        .map(|written| written.meta.version)
}

async fn read(f: &Fixture, p: &str, version: Option<u64>) -> Option<String> {
    let stored = f.store.read_version(&path(p), version).await.unwrap()?;
    let sealed = stored.sealed.as_ref()?;
    let plain = f.ring.open(stored.binding(), sealed).unwrap();
    Some(String::from_utf8(plain.expose().to_vec()).unwrap())
}

async fn versions_are_written_and_read(f: &Fixture) {
    assert_eq!(put(f, "team/db", "one", Cas::None).await.unwrap(), 1);
    assert_eq!(put(f, "team/db", "two", Cas::None).await.unwrap(), 2);
    assert_eq!(read(f, "team/db", None).await.as_deref(), Some("two"));
    assert_eq!(read(f, "team/db", Some(1)).await.as_deref(), Some("one"));
    assert_eq!(read(f, "team/db", Some(3)).await, None);
    assert_eq!(read(f, "team/other", None).await, None);
    let stored = f
        .store
        .read_version(&path("team/db"), Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.current_version, 2);
    assert_eq!(stored.meta.state, VersionState::Active);
    assert_eq!(stored.meta.created_at, t(1));
}

async fn check_and_set(f: &Fixture) {
    assert_eq!(put(f, "cas", "a", Cas::Version(0)).await.unwrap(), 1);
    let err = put(f, "cas", "b", Cas::Version(0)).await.unwrap_err();
    assert!(matches!(
        err,
        StoreError::Kv(KvError::CasMismatch {
            expected: 0,
            current: 1
        })
    ));
    assert!(put(f, "cas", "b", Cas::Version(2)).await.is_err());
    assert_eq!(put(f, "cas", "b", Cas::Version(1)).await.unwrap(), 2);
    // A refused write changes nothing, not even for an absent secret.
    assert!(put(f, "absent", "x", Cas::Version(4)).await.is_err());
    assert_eq!(f.store.metadata(&path("absent")).await.unwrap(), None);
    // cas_required from the server settings and from the secret's own metadata.
    let strict = KvSettings {
        cas_required: true,
        ..DEFAULTS
    };
    let err = f
        .store
        .put_version(&path("cas"), Cas::None, strict, t(2), &[], seal(f, b"c"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Kv(KvError::CasRequired)));
    let update = MetadataUpdate {
        cas_required: Some(true),
        ..Default::default()
    };
    f.store
        .update_metadata(&path("cas"), &update, t(3), &[])
        .await
        .unwrap();
    assert!(matches!(
        put(f, "cas", "c", Cas::None).await.unwrap_err(),
        StoreError::Kv(KvError::CasRequired)
    ));
    assert_eq!(put(f, "cas", "c", Cas::Version(2)).await.unwrap(), 3);
    // A secret made by a metadata write alone gets version 1, and a write answers the
    // secret's custom metadata.
    let update = MetadataUpdate {
        custom_metadata: Some([("owner".to_owned(), "ops".to_owned())].into()),
        ..Default::default()
    };
    f.store
        .update_metadata(&path("by-metadata"), &update, t(4), &[])
        .await
        .unwrap();
    let written = f
        .store
        .put_version(
            &path("by-metadata"),
            Cas::Version(0),
            DEFAULTS,
            t(5),
            &[],
            seal(f, b"m"),
        )
        .await
        .unwrap();
    assert_eq!(written.meta.version, 1);
    assert_eq!(written.custom_metadata, update.custom_metadata.unwrap());
    let meta = f
        .store
        .metadata(&path("by-metadata"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((meta.current_version, meta.oldest_version), (1, 1));
    assert_eq!(read(f, "by-metadata", None).await.as_deref(), Some("m"));
}

async fn old_versions_are_pruned(f: &Fixture) {
    let settings = KvSettings {
        max_versions: MaxVersions::new(3).unwrap(),
        ..DEFAULTS
    };
    for i in 1..=5 {
        let value = format!("v{i}");
        f.store
            .put_version(
                &path("p"),
                Cas::None,
                settings,
                t(i),
                &[],
                seal(f, value.as_bytes()),
            )
            .await
            .unwrap();
    }
    let meta = f.store.metadata(&path("p")).await.unwrap().unwrap();
    assert_eq!(meta.current_version, 5);
    assert_eq!(meta.oldest_version, 3);
    assert_eq!(
        meta.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert_eq!(read(f, "p", Some(2)).await, None);
    assert_eq!(read(f, "p", Some(3)).await.as_deref(), Some("v3"));
    // A per-secret maximum overrides the server's.
    let update = MetadataUpdate {
        max_versions: Some(Some(MaxVersions::new(1).unwrap())),
        ..Default::default()
    };
    f.store
        .update_metadata(&path("p"), &update, t(9), &[])
        .await
        .unwrap();
    put(f, "p", "v6", Cas::None).await.unwrap();
    let meta = f.store.metadata(&path("p")).await.unwrap().unwrap();
    assert_eq!(
        meta.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [6]
    );
}

/// A merge (a patch) into a version deleted or destroyed since it was read is refused: the
/// version number has not moved, but the value merged into must not come back.
async fn a_merge_needs_its_version_still_readable(f: &Fixture) {
    put(f, "m", "a", Cas::None).await.unwrap();
    assert_eq!(put(f, "m", "b", Cas::Merge(1)).await.unwrap(), 2);
    let p = path("m");
    assert!(f.store.delete_versions(&p, &[], t(10), &[]).await.unwrap());
    let refused = put(f, "m", "c", Cas::Merge(2)).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Kv(KvError::VersionGone { version: 2 }))
        ),
        "{refused:?}"
    );
    assert_eq!(
        f.store
            .read_version(&p, None)
            .await
            .unwrap()
            .unwrap()
            .meta
            .version,
        2
    );
    // A plain write (no merge) still goes ahead.
    assert_eq!(put(f, "m", "d", Cas::Version(2)).await.unwrap(), 3);
    f.store
        .destroy_versions(&p, &[3], t(11), &[])
        .await
        .unwrap();
    assert!(put(f, "m", "e", Cas::Merge(3)).await.is_err());
}

async fn delete_undelete_destroy(f: &Fixture) {
    for v in ["a", "b", "c"] {
        put(f, "d", v, Cas::None).await.unwrap();
    }
    let p = path("d");
    let written = f.store.metadata(&p).await.unwrap().unwrap().updated_at;
    // Deleting with no versions deletes the current one.
    assert!(f.store.delete_versions(&p, &[], t(10), &[]).await.unwrap());
    // A version's state is not an update of the secret (Vault's `updated_time` stays).
    assert_eq!(
        f.store.metadata(&p).await.unwrap().unwrap().updated_at,
        written
    );
    let current = f.store.read_version(&p, None).await.unwrap().unwrap();
    assert_eq!(current.meta.state, VersionState::Deleted(t(10)));
    assert!(f.store.delete_versions(&p, &[1], t(11), &[]).await.unwrap());
    assert!(
        f.store
            .undelete_versions(&p, &[1, 3], t(12), &[])
            .await
            .unwrap()
    );
    assert_eq!(read(f, "d", Some(3)).await.as_deref(), Some("c"));
    assert!(
        f.store
            .destroy_versions(&p, &[2], t(13), &[])
            .await
            .unwrap()
    );
    let destroyed = f.store.read_version(&p, Some(2)).await.unwrap().unwrap();
    assert_eq!(
        destroyed.meta.state,
        VersionState::Destroyed {
            at: t(13),
            deleted: None
        }
    );
    assert!(destroyed.sealed.is_none());
    // Destroyed is final: undelete and delete leave it destroyed.
    f.store
        .undelete_versions(&p, &[2], t(14), &[])
        .await
        .unwrap();
    f.store.delete_versions(&p, &[2], t(15), &[]).await.unwrap();
    let meta = f.store.metadata(&p).await.unwrap().unwrap();
    assert_eq!(
        meta.versions[1].state,
        VersionState::Destroyed {
            at: t(13),
            deleted: None
        }
    );
    assert_eq!(meta.versions[0].state, VersionState::Active);
    // A deleted version destroyed later keeps its deletion time, as Vault shows it.
    f.store.delete_versions(&p, &[3], t(16), &[]).await.unwrap();
    f.store
        .destroy_versions(&p, &[3], t(17), &[])
        .await
        .unwrap();
    let gone = f.store.read_version(&p, Some(3)).await.unwrap().unwrap();
    assert_eq!(
        gone.meta.state,
        VersionState::Destroyed {
            at: t(17),
            deleted: Some(t(16))
        }
    );
    assert_eq!(gone.meta.deletion_time(), Some(t(16)));
    assert!(gone.meta.destroyed());
    // Unknown secrets report false; unknown versions are ignored.
    assert!(
        !f.store
            .delete_versions(&path("nope"), &[], t(16), &[])
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .destroy_versions(&path("nope"), &[1], t(16), &[])
            .await
            .unwrap()
    );
    assert!(
        f.store
            .delete_versions(&p, &[99], t(16), &[])
            .await
            .unwrap()
    );
}

async fn listing_by_prefix(f: &Fixture) {
    for p in ["team/a", "team/b/c", "team/b/d", "teamx", "other/x"] {
        put(f, p, "v", Cas::None).await.unwrap();
    }
    let list = |p: &'static str| async move {
        f.store
            .list(&SecretPrefix::parse(p).unwrap())
            .await
            .unwrap()
    };
    assert_eq!(list("team").await, ["a", "b/"]);
    assert_eq!(list("team/b/").await, ["c", "d"]);
    assert_eq!(list("").await, ["other/", "team/", "teamx"]);
    assert!(list("missing").await.is_empty());
    // `_` is not a wildcard.
    put(f, "a_b/x", "v", Cas::None).await.unwrap();
    put(f, "axb/y", "v", Cas::None).await.unwrap();
    assert_eq!(list("a_b").await, ["x"]);
}

async fn deleting_a_secret_never_reuses_its_id(f: &Fixture) {
    put(f, "gone", "old", Cas::None).await.unwrap();
    let before = f
        .store
        .read_version(&path("gone"), None)
        .await
        .unwrap()
        .unwrap();
    assert!(f.store.delete_secret(&path("gone"), &[]).await.unwrap());
    assert_eq!(f.store.metadata(&path("gone")).await.unwrap(), None);
    assert!(!f.store.delete_secret(&path("gone"), &[]).await.unwrap());
    put(f, "gone", "new", Cas::Version(0)).await.unwrap();
    let after = f
        .store
        .read_version(&path("gone"), None)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(before.secret_id, after.secret_id);
    assert_eq!(after.meta.version, 1);
    // The old ciphertext does not open under the new row's binding.
    assert!(
        f.ring
            .open(after.binding(), before.sealed.as_ref().unwrap())
            .is_err()
    );
}

async fn keyring_and_tokens(f: &Fixture) {
    assert_eq!(f.store.keyring().await.unwrap(), None);
    let unseal = UnsealKey::generate();
    let record = KeyringRecord {
        kek_generation: 0,
        rewrapped_generation: 0,
        wrapped_root_key: RootKey::generate().wrap(&unseal),
        seal: SealConfig::Shamir {
            shares: 5,
            threshold: 3,
        },
        created_at: t(1),
        // Kept as they are given, by share index.
        share_digests: (1..=5).map(|i| format!("{i:064x}")).collect(),
    };
    let token = ApiToken::generate();
    let admin = TokenRecord {
        hash: token.hash(),
        // Labels are kept as given.
        meta: [("job".to_owned(), "ci-42".to_owned())].into(),
        ..api_token("tok_admin", "initial admin", "admin")
    };
    f.store
        .initialize(&record, &admin, ("log.example/first", b"sealed-seed"), &[])
        .await
        .unwrap();
    assert_eq!(f.store.keyring().await.unwrap(), Some(record.clone()));
    // The ledger's signing key is stored with the keyring, in the same transaction.
    assert_eq!(
        f.store.ledger_key().await.unwrap(),
        Some(("log.example/first".to_owned(), b"sealed-seed".to_vec()))
    );
    assert!(record.wrapped_root_key.open(&unseal).is_ok());
    let again = TokenRecord {
        id: "tok_other".into(),
        hash: ApiToken::generate().hash(),
        ..admin.clone()
    };
    assert!(matches!(
        f.store
            .initialize(&record, &again, ("log.example/second", b"other"), &[])
            .await,
        Err(StoreError::AlreadyInitialized)
    ));
    assert_eq!(
        f.store
            .ledger_key()
            .await
            .unwrap()
            .map(|(origin, _)| origin),
        Some("log.example/first".to_owned())
    );
    assert_eq!(
        f.store.token_by_hash(&token.hash()).await.unwrap(),
        Some(admin.clone())
    );
    assert_eq!(
        f.store
            .token_by_hash(&ApiToken::generate().hash())
            .await
            .unwrap(),
        None
    );
    // The failed second initialisation stored nothing.
    assert_eq!(f.store.token_by_hash(&again.hash).await.unwrap(), None);
    let expiring = TokenRecord {
        id: "tok_ci".into(),
        hash: ApiToken::generate().hash(),
        expires_at: Some(t(100)),
        ..admin
    };
    f.store.insert_token(&expiring, &[]).await.unwrap();
    assert_eq!(
        f.store.token_by_hash(&expiring.hash).await.unwrap(),
        Some(expiring)
    );
}

async fn concurrent_writers_with_the_same_cas(f: &Fixture) {
    let ring = Arc::new(RootKey::generate().keyring());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = f.store.clone();
        let ring = ring.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put_version(
                    &path("race"),
                    Cas::Version(0),
                    DEFAULTS,
                    t(i),
                    &[],
                    move |b| ring.seal(b, format!("writer {i}").as_bytes()),
                )
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Kv(KvError::CasMismatch { .. })) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(ok, 1);
    let meta = f.store.metadata(&path("race")).await.unwrap().unwrap();
    assert_eq!(meta.current_version, 1);
}

async fn metadata_updates(f: &Fixture) {
    let custom = BTreeMap::from([("owner".to_owned(), "payments".to_owned())]);
    let update = MetadataUpdate {
        custom_metadata: Some(custom.clone()),
        ..Default::default()
    };
    f.store
        .update_metadata(&path("m"), &update, t(5), &[])
        .await
        .unwrap();
    let meta = f.store.metadata(&path("m")).await.unwrap().unwrap();
    assert_eq!(meta.custom_metadata, custom);
    assert_eq!(meta.current_version, 0);
    assert_eq!(meta.metadata_version, 1, "one metadata write");
    assert!(meta.versions.is_empty());
    // Metadata without versions is listed, as Vault lists it.
    assert_eq!(
        f.store.list(&SecretPrefix::default()).await.unwrap(),
        ["m".to_owned()]
    );
    put(f, "m", "v", Cas::Version(0)).await.unwrap();
    let meta = f.store.metadata(&path("m")).await.unwrap().unwrap();
    assert_eq!(meta.custom_metadata, custom);
    assert_eq!(meta.current_version, 1);
    assert_eq!(
        meta.metadata_version, 1,
        "a data write is not a metadata write"
    );
    let stored = f
        .store
        .read_version(&path("m"), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.custom_metadata, custom);
}

async fn a_closed_database_is_an_error_not_absence(f: &Fixture) {
    put(f, "x", "v", Cas::None).await.unwrap();
    f.store.close().await;
    assert!(matches!(
        f.store.read_version(&path("x"), None).await,
        Err(StoreError::Database { .. })
    ));
    assert!(matches!(
        f.store.metadata(&path("x")).await,
        Err(StoreError::Database { .. })
    ));
    assert!(matches!(
        f.store.token_by_hash(&ApiToken::generate().hash()).await,
        Err(StoreError::Database { .. })
    ));
    assert!(matches!(
        f.store.keyring().await,
        Err(StoreError::Database { .. })
    ));
}

/// Another store to write the fixture's database while its own is open: a second node on
/// PostgreSQL; `None` on SQLite, which one store at a time writes. There a second store is
/// refused, naming this process, and a backup's store (which takes no lock) reads but
/// refuses every change.
async fn second_store(f: &Fixture) -> Option<Store> {
    let Some(file) = f.url.sqlite_path() else {
        return Some(Store::connect(&f.url).await.unwrap());
    };
    match Store::connect(&f.url).await {
        Err(StoreError::InUse { database, holder }) => {
            assert_eq!(database, file);
            assert_eq!(holder, Some(std::process::id()));
        }
        other => panic!("a second store took a held SQLite database: {other:?}"),
    }
    let backup = Store::connect_existing(&f.url).await.unwrap();
    let size = f.store.ledger_size().await.unwrap();
    assert_eq!(backup.ledger_size().await.unwrap(), size);
    assert!(matches!(
        backup.append_events(vec![event("backup.write")]).await,
        Err(StoreError::ReadOnly)
    ));
    assert!(matches!(
        backup
            .put_version(
                &path("refused"),
                Cas::None,
                DEFAULTS,
                t(1),
                &[],
                seal(f, b"v")
            )
            .await,
        Err(StoreError::ReadOnly)
    ));
    assert_eq!(f.store.ledger_size().await.unwrap(), size);
    backup.close().await;
    None
}

async fn migrations_are_idempotent(f: &Fixture) {
    put(f, "kept", "v", Cas::None).await.unwrap();
    // Running the migrations again on the same database changes nothing.
    f.store.close().await;
    let again = Store::connect(&f.url).await.unwrap();
    let stored = again
        .read_version(&path("kept"), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.meta.version, 1);
    again.close().await;
}

fn vendor(id: &str) -> VendorRecord {
    VendorRecord {
        id: id.into(),
        name: format!("{id} Ltd"),
        status: "active".into(),
        allowed_networks: vec!["10.0.0.0/8".into()],
        profile: serde_json::json!({ "country": "DE" }),
        created_at: t(0),
        updated_at: t(0),
    }
}

fn suspended(id: &str) -> VendorRecord {
    VendorRecord {
        status: "suspended".into(),
        ..vendor(id)
    }
}

fn person_record(id: &str, vendor: Option<&str>) -> PersonRecord {
    PersonRecord {
        id: id.into(),
        name: format!("name-{id}"),
        email: Some(format!("{id}@example.com")),
        role: "contractor".into(),
        vendor_id: vendor.map(Into::into),
        disabled_at: None,
        password_hash: None,
        totp_secret: None,
        totp_last_step: None,
        allowed_networks: Vec::new(),
        created_at: t(0),
        ends_at: None,
        created_by: Some("per_creator".into()),
        reset_by: None,
    }
}

async fn people_vendors_and_enrolment(f: &Fixture) {
    let v = vendor("v1");
    f.store.insert_vendor(&v, &[]).await.unwrap();
    assert_eq!(f.store.vendor("v1 Ltd").await.unwrap(), Some(v.clone()));
    f.store
        .apply(
            vec![Op::UpdateVendor {
                vendor: suspended("v1"),
                previous_status: "active".into(),
                previous_updated_at: t(0),
                at: t(1),
            }],
            Vec::new(),
        )
        .await
        .unwrap();
    let stored = VendorRecord {
        updated_at: t(1),
        ..suspended("v1")
    };
    assert_eq!(
        f.store.vendors().await.unwrap(),
        std::slice::from_ref(&stored)
    );
    // A change decided on a stale read is refused, even with the status unchanged: another
    // edit of the profile or allowlist came first.
    let stale_edit = f
        .store
        .apply(
            vec![Op::UpdateVendor {
                vendor: VendorRecord {
                    allowed_networks: Vec::new(),
                    ..suspended("v1")
                },
                previous_status: "suspended".into(),
                previous_updated_at: t(0),
                at: t(2),
            }],
            Vec::new(),
        )
        .await;
    assert!(
        matches!(stale_edit, Err(StoreError::Conflict(_))),
        "{stale_edit:?}"
    );
    assert_eq!(f.store.vendors().await.unwrap(), [stored]);
    // A change decided on a stale status is refused.
    assert!(matches!(
        f.store
            .apply(
                vec![Op::UpdateVendor {
                    vendor: vendor("v1"),
                    previous_status: "active".into(),
                    previous_updated_at: t(0),
                    at: t(2),
                }],
                Vec::new()
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        f.store.vendor("v1").await.unwrap().unwrap().status,
        "suspended"
    );
    assert_eq!(f.store.vendor("nope").await.unwrap(), None);

    let p = person_record("p1", Some("v1"));
    let code = [7u8; 32];
    f.store.insert_person(&p, &code, t(100), &[]).await.unwrap();
    assert_eq!(f.store.person("name-p1").await.unwrap(), Some(p.clone()));
    // A second person with the same name is refused as a conflict (two adds that raced past
    // the handler's check), and adds no enrolment code; so is a second vendor's name.
    let dup = PersonRecord {
        id: "p2".into(),
        ..p.clone()
    };
    let refused = f.store.insert_person(&dup, &[8u8; 32], t(100), &[]).await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(m)) if m.contains("already exists")),
        "{refused:?}"
    );
    assert_eq!(f.store.person("p2").await.unwrap(), None);
    let twin = VendorRecord {
        id: "v2".into(),
        ..vendor("v1")
    };
    let refused = f.store.insert_vendor(&twin, &[]).await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(m)) if m.contains("already exists")),
        "{refused:?}"
    );

    // An expired or unknown code does nothing.
    let recovery = [[1u8; 32], [2u8; 32]];
    let enrol = |code: [u8; 32], now: Timestamp| {
        let store = f.store.clone();
        async move {
            store
                .complete_enrolment(
                    &code,
                    now,
                    "$argon2id$x",
                    |id| format!("sealed:{id}").into_bytes(),
                    &recovery,
                    &[],
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(enrol(code, t(100)).await, None);
    assert_eq!(enrol([9u8; 32], t(1)).await, None);
    let enrolled = enrol(code, t(1)).await.unwrap();
    assert_eq!(enrolled.password_hash.as_deref(), Some("$argon2id$x"));
    assert_eq!(enrolled.totp_secret.as_deref(), Some(&b"sealed:p1"[..]));
    // A code works once.
    assert_eq!(enrol(code, t(2)).await, None);

    // A reset clears the credentials and recovery codes, and only its new code enrols.
    let reset = |new: [u8; 32]| Op::ResetCredentials {
        person_id: "p1".into(),
        code_hash: new,
        expires_at: t(100),
        at: t(3),
        by: Some("per_resetter".into()),
        refuse_if_granted: false,
    };
    f.store
        .apply(vec![reset([10u8; 32])], Vec::new())
        .await
        .unwrap();
    f.store
        .apply(vec![reset([11u8; 32])], Vec::new())
        .await
        .unwrap();
    let cleared = f.store.person("p1").await.unwrap().unwrap();
    assert_eq!((cleared.password_hash, cleared.totp_secret), (None, None));
    assert_eq!(cleared.reset_by.as_deref(), Some("per_resetter"));
    assert!(
        !f.store
            .use_recovery_code("p1", &recovery[0], t(3))
            .await
            .unwrap()
    );
    assert_eq!(enrol([10u8; 32], t(4)).await, None);
    assert!(enrol([11u8; 32], t(4)).await.is_some());

    assert!(
        f.store
            .set_person_disabled("p1", Some(t(5)), &[])
            .await
            .unwrap()
    );
    assert_eq!(
        f.store.person("p1").await.unwrap().unwrap().disabled_at,
        Some(t(5))
    );
    // A disabled account is not reset.
    let refused = f.store.apply(vec![reset([12u8; 32])], Vec::new()).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert!(
        f.store
            .set_person_networks("p1", &["127.0.0.1/32".into()], &[])
            .await
            .unwrap()
    );
    assert_eq!(
        f.store.list_people().await.unwrap()[0].allowed_networks,
        ["127.0.0.1/32"]
    );
}

async fn totp_steps_and_recovery_codes_are_used_once(f: &Fixture) {
    let p = person_record("p1", None);
    f.store
        .insert_person(&p, &[3u8; 32], t(100), &[])
        .await
        .unwrap();
    f.store
        .complete_enrolment(&[3u8; 32], t(1), "h", |_| vec![1], &[[4u8; 32]], &[])
        .await
        .unwrap();
    assert!(f.store.accept_totp_step("p1", 10).await.unwrap());
    assert!(!f.store.accept_totp_step("p1", 10).await.unwrap());
    assert!(!f.store.accept_totp_step("p1", 9).await.unwrap());
    assert!(f.store.accept_totp_step("p1", 11).await.unwrap());
    assert!(
        f.store
            .use_recovery_code("p1", &[4u8; 32], t(2))
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .use_recovery_code("p1", &[4u8; 32], t(3))
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .use_recovery_code("p1", &[5u8; 32], t(3))
            .await
            .unwrap()
    );
}

async fn grants_classifications_and_failures(f: &Fixture) {
    f.store
        .insert_person(&person_record("p1", None), &[3u8; 32], t(100), &[])
        .await
        .unwrap();
    let grant = GrantRecord {
        id: "g1".into(),
        person_id: "p1".into(),
        prefix: "acme/".into(),
        capabilities: vec!["read".into(), "list".into()],
        expires_at: t(50),
        created_at: t(0),
        created_by: "tok_admin".into(),
        revoked_at: None,
        request_id: None,
        break_glass: true,
        terms: None,
        reason: Some("incident 42".into()),
        reviewed: None,
    };
    f.store.insert_grant(&grant, &[]).await.unwrap();
    assert_eq!(
        f.store.grants_of("p1").await.unwrap(),
        std::slice::from_ref(&grant)
    );
    // A reset that must find no grant fails while one is live, and passes once it expired.
    let reset = |at: Timestamp| Op::ResetCredentials {
        person_id: "p1".into(),
        code_hash: [9u8; 32],
        expires_at: t(100),
        at,
        by: None,
        refuse_if_granted: true,
    };
    let refused = f.store.apply(vec![reset(t(1))], Vec::new()).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    f.store.apply(vec![reset(t(50))], Vec::new()).await.unwrap();
    assert!(f.store.revoke_grant("g1", t(2), &[]).await.unwrap());
    // What a change is decided on, checked in it: a token revoked, a grant to a disabled
    // account.
    let revoked = f
        .store
        .apply(vec![Op::RequireLiveToken("tok_none".into())], Vec::new())
        .await;
    assert!(
        matches!(revoked, Err(StoreError::Conflict(_))),
        "{revoked:?}"
    );
    f.store
        .set_person_disabled("p1", Some(t(3)), &[])
        .await
        .unwrap();
    let late = GrantRecord {
        id: "g_late".into(),
        ..grant.clone()
    };
    let refused = f.store.insert_grant(&late, &[]).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    f.store.set_person_disabled("p1", None, &[]).await.unwrap();
    assert!(!f.store.revoke_grant("g1", t(3), &[]).await.unwrap());
    assert!(f.store.grants_of("p1").await.unwrap().is_empty());

    f.store
        .set_classification("fin", "confidential", t(0), &[])
        .await
        .unwrap();
    f.store
        .set_classification("fin", "regulated", t(1), &[])
        .await
        .unwrap();
    f.store
        .set_classification("pub", "public", t(1), &[])
        .await
        .unwrap();
    assert_eq!(
        f.store.classifications().await.unwrap(),
        [
            ("fin".to_owned(), "regulated".to_owned()),
            ("pub".to_owned(), "public".to_owned())
        ]
    );
    assert!(f.store.remove_classification("pub", &[]).await.unwrap());
    assert!(!f.store.remove_classification("pub", &[]).await.unwrap());

    let subjects = ["account:ada".to_owned(), "ip:127.0.0.1".to_owned()];
    for i in 0..3 {
        f.store
            .record_auth_failure(&subjects, t(i * 10))
            .await
            .unwrap();
    }
    assert_eq!(
        f.store
            .auth_failures_since("account:ada", t(0))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        f.store
            .auth_failures_since("account:ada", t(15))
            .await
            .unwrap(),
        1
    );
    f.store.clear_auth_failures("account:ada").await.unwrap();
    assert_eq!(
        f.store
            .auth_failures_since("account:ada", t(0))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        f.store
            .auth_failures_since("ip:127.0.0.1", t(0))
            .await
            .unwrap(),
        3
    );
}

/// An account's login networks: remembered (again: the newest time), the 32 most recent
/// kept, old ones pruned, and forgotten by a reset's op.
async fn an_account_keeps_its_recent_login_networks(f: &Fixture) {
    // Remembered only with a session that is live.
    f.store
        .remember_login_network("account:ada", "ip:10.9.9.9", "tok_none", t(1))
        .await
        .unwrap();
    assert!(
        !f.store
            .login_network_known("account:ada", "ip:10.9.9.9", t(0))
            .await
            .unwrap()
    );
    f.store
        .insert_token(&api_token("tok_s", "login", "member"), &[])
        .await
        .unwrap();
    let known = |network: &str, since: i64| {
        let network = network.to_owned();
        async move {
            f.store
                .login_network_known("account:ada", &network, t(since))
                .await
                .unwrap()
        }
    };
    for i in 0..40 {
        f.store
            .remember_login_network("account:ada", &format!("ip:10.0.0.{i}"), "tok_s", t(i))
            .await
            .unwrap();
    }
    f.store
        .remember_login_network("account:bo", "ip:10.0.0.1", "tok_s", t(1))
        .await
        .unwrap();
    // The 32 most recent of ada's.
    assert!(!known("ip:10.0.0.7", 0).await);
    assert!(known("ip:10.0.0.8", 0).await);
    assert!(known("ip:10.0.0.39", 0).await);
    assert!(!known("ip:10.0.0.40", 0).await);
    // Seen again, a network is as recent as its last login.
    f.store
        .remember_login_network("account:ada", "ip:10.0.0.8", "tok_s", t(50))
        .await
        .unwrap();
    assert!(known("ip:10.0.0.8", 45).await);
    assert!(!known("ip:10.0.0.9", 45).await);
    // Pruned by age, every account's.
    assert_eq!(f.store.prune_login_networks(t(20)).await.unwrap(), 12);
    assert!(!known("ip:10.0.0.19", 0).await);
    assert!(known("ip:10.0.0.20", 0).await);
    assert!(
        !f.store
            .login_network_known("account:bo", "ip:10.0.0.1", t(0))
            .await
            .unwrap()
    );
    f.store
        .apply(vec![Op::ForgetLoginNetworks("account:ada".into())], vec![])
        .await
        .unwrap();
    assert!(!known("ip:10.0.0.8", 0).await);
    assert!(!known("ip:10.0.0.39", 0).await);
}

/// A person holds a bounded number of live API tokens made by requests: revoked and
/// expired ones, sessions and other people's do not count.
async fn a_persons_live_tokens_are_bounded(f: &Fixture) {
    f.store
        .insert_person(&person_record("pq", None), &[4u8; 32], t(100), &[])
        .await
        .unwrap();
    let session = TokenRecord {
        expires_at: Some(t(100)),
        person_id: Some("pq".into()),
        kind: TokenKind::Session,
        ..api_token("tok_qs", "login", "member")
    };
    f.store.insert_token(&session, &[]).await.unwrap();
    let made = |id: &str, expires: i64| {
        let store = f.store.clone();
        let token = TokenRecord {
            created_at: t(10),
            expires_at: Some(t(expires)),
            person_id: Some("pq".into()),
            ..api_token(id, "job", "member")
        };
        async move {
            store
                .insert_token_decided(
                    &token,
                    &[],
                    DecidedOn::TokenAtMost {
                        by: "tok_qs".into(),
                        live: 2,
                    },
                )
                .await
        }
    };
    let over = |result: Result<(), StoreError>| matches!(&result, Err(StoreError::Conflict(m)) if m.starts_with(chaperone_store::TOKEN_QUOTA));
    // An expired one does not count.
    made("tok_q0", 5).await.unwrap();
    made("tok_q1", 100).await.unwrap();
    made("tok_q2", 100).await.unwrap();
    assert!(over(made("tok_q3", 100).await));
    f.store
        .revoke_token("tok_q2", t(11), revoke_event)
        .await
        .unwrap();
    made("tok_q3", 100).await.unwrap();
}

async fn tokens_of_people(f: &Fixture) {
    f.store
        .insert_person(&person_record("p1", None), &[3u8; 32], t(100), &[])
        .await
        .unwrap();
    let session = TokenRecord {
        expires_at: Some(t(100)),
        person_id: Some("p1".into()),
        kind: TokenKind::Session,
        scope: Some("[]".into()),
        ..api_token("tok_s", "login", "contractor")
    };
    f.store.insert_token(&session, &[]).await.unwrap();
    assert_eq!(
        f.store.list_tokens(Some("p1")).await.unwrap(),
        std::slice::from_ref(&session)
    );
    assert!(f.store.list_tokens(None).await.unwrap().is_empty());
    f.store
        .mark_token_verified("tok_s", t(5), &[])
        .await
        .unwrap();
    assert_eq!(
        f.store
            .token_by_id("tok_s")
            .await
            .unwrap()
            .unwrap()
            .mfa_verified_at,
        Some(t(5))
    );
    // A session's use is recorded, and never moved back.
    f.store.mark_token_used("tok_s", t(5)).await.unwrap();
    f.store.mark_token_used("tok_s", t(4)).await.unwrap();
    let used = f.store.token_by_id("tok_s").await.unwrap().unwrap();
    assert_eq!(used.last_used_at, Some(t(5)));
    let revoked = f.store.revoke_token("tok_s", t(6), revoke_event).await;
    assert_eq!(revoked.unwrap().len(), 1);
    let again = f.store.revoke_token("tok_s", t(7), revoke_event).await;
    assert!(again.unwrap().is_empty());
    // A token is stored only while what it was decided on holds: the password hash a login
    // verified, the live token that asked for it.
    f.store
        .complete_enrolment(&[3u8; 32], t(6), "$argon2id$old", |_| vec![1], &[], &[])
        .await
        .unwrap()
        .unwrap();
    let decided = |id: &str, on: DecidedOn| {
        let store = f.store.clone();
        let token = TokenRecord {
            id: id.into(),
            hash: ApiToken::generate().hash(),
            ..session.clone()
        };
        async move { store.insert_token_decided(&token, &[], on).await }
    };
    let stale = decided("tok_d1", DecidedOn::Password("$argon2id$other".into())).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let by_revoked = decided("tok_d2", DecidedOn::Token("tok_s".into())).await;
    assert!(
        matches!(by_revoked, Err(StoreError::Conflict(_))),
        "{by_revoked:?}"
    );
    decided("tok_d3", DecidedOn::Password("$argon2id$old".into()))
        .await
        .unwrap();
    decided("tok_d4", DecidedOn::Token("tok_d3".into()))
        .await
        .unwrap();
    assert_eq!(f.store.token_by_id("tok_d1").await.unwrap(), None);
    assert_eq!(f.store.token_by_id("tok_d2").await.unwrap(), None);
    // No token is stored for a disabled account: one decided before the disable committed
    // would otherwise come back with the account.
    f.store
        .apply(
            vec![Op::DisablePerson {
                id: "p1".into(),
                at: t(8),
            }],
            Vec::new(),
        )
        .await
        .unwrap();
    let late = TokenRecord {
        id: "tok_late".into(),
        hash: ApiToken::generate().hash(),
        ..session.clone()
    };
    let refused = f.store.insert_token(&late, &[]).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(f.store.token_by_id("tok_late").await.unwrap(), None);
    assert_eq!(
        f.store
            .token_by_hash(&session.hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(t(6))
    );
}

fn revoke_event(token: &TokenRecord) -> chaperone_ledger::entry::Event {
    chaperone_ledger::entry::Event {
        resource: token.id.clone(),
        ..event("token.revoke")
    }
}

fn child_token(id: &str, parent: &str) -> TokenRecord {
    TokenRecord {
        parent_id: Some(parent.into()),
        ..api_token(id, id, "admin")
    }
}

async fn token_trees_are_revoked_whole(f: &Fixture) {
    let store = f.store.clone();
    let insert = move |token: TokenRecord| {
        let store = store.clone();
        async move { store.insert_token(&token, &[]).await }
    };
    insert(api_token("tok_root", "root", "admin"))
        .await
        .unwrap();
    insert(api_token("tok_orphan", "orphan", "admin"))
        .await
        .unwrap();
    for (id, parent) in [
        ("tok_a", "tok_root"),
        ("tok_b", "tok_root"),
        ("tok_a1", "tok_a"),
        ("tok_a11", "tok_a1"),
    ] {
        insert(child_token(id, parent)).await.unwrap();
    }
    assert_eq!(
        f.store
            .token_by_id("tok_a11")
            .await
            .unwrap()
            .unwrap()
            .parent_id,
        Some("tok_a1".into())
    );
    let ids = |tokens: Vec<TokenRecord>| tokens.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let size = f.store.ledger_size().await.unwrap();

    // A branch alone, then the whole tree: a token revoked before is not revoked again.
    let branch = f.store.revoke_token("tok_b", t(5), revoke_event).await;
    assert_eq!(ids(branch.unwrap()), ["tok_b"]);
    let tree = f.store.revoke_token("tok_root", t(6), revoke_event).await;
    assert_eq!(
        ids(tree.unwrap()),
        ["tok_root", "tok_a", "tok_a1", "tok_a11"]
    );
    for (id, at) in [
        ("tok_root", Some(t(6))),
        ("tok_a11", Some(t(6))),
        ("tok_b", Some(t(5))),
        ("tok_orphan", None),
    ] {
        let token = f.store.token_by_id(id).await.unwrap().unwrap();
        assert_eq!(token.revoked_at, at, "{id}");
        // The cached read by hash sees the revocation too.
        let cached = f.store.token_by_hash(&token.hash).await.unwrap().unwrap();
        assert_eq!(cached.revoked_at, at, "{id}");
    }
    assert!(
        f.store
            .revoke_token("tok_root", t(7), revoke_event)
            .await
            .unwrap()
            .is_empty()
    );
    // One entry per token revoked, in the same transactions.
    let entries = f.store.ledger_entries(size, size + 10).await.unwrap();
    let resources: Vec<String> = entries
        .iter()
        .map(|(_, e)| {
            let entry: serde_json::Value = serde_json::from_slice(e).unwrap();
            entry["resource"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        resources,
        ["tok_b", "tok_root", "tok_a", "tok_a1", "tok_a11"]
    );

    // Nothing is made from a revoked token.
    let late = f
        .store
        .insert_token(&child_token("tok_late", "tok_a1"), &[])
        .await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    assert_eq!(f.store.token_by_id("tok_late").await.unwrap(), None);

    // Children and grandchildren made while their root is revoked (changes are serialised
    // by the ledger's lock): each is refused or revoked, never left valid.
    insert(api_token("tok_busy", "busy", "admin"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let insert = insert.clone();
        tasks.push(tokio::spawn(async move {
            let child = format!("tok_c{i}");
            if insert(child_token(&child, "tok_busy")).await.is_ok() {
                let _ = insert(child_token(&format!("tok_g{i}"), &child)).await;
            }
        }));
        if i == 8 {
            let store = f.store.clone();
            tasks.push(tokio::spawn(async move {
                let revoked = store.revoke_token("tok_busy", t(8), revoke_event).await;
                assert!(!revoked.unwrap().is_empty());
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    for i in 0..16 {
        for id in [format!("tok_c{i}"), format!("tok_g{i}")] {
            if let Some(token) = f.store.token_by_id(&id).await.unwrap() {
                assert_eq!(token.revoked_at, Some(t(8)), "{id} outlived its root");
            }
        }
    }
}

async fn the_upgrade_counts_live_sessions_as_just_used(f: &Fixture) {
    let session = |id: &str, revoked: bool| TokenRecord {
        kind: TokenKind::Session,
        revoked_at: revoked.then(|| t(2)),
        ..api_token(id, id, "admin")
    };
    for token in [
        session("tok_live", false),
        session("tok_gone", true),
        api_token("tok_api", "api", "admin"),
    ] {
        f.store.insert_token(&token, &[]).await.unwrap();
    }
    // Schema version 12's update, as run at the upgrade.
    let migration = if f.url.backend() == chaperone_store::Backend::Postgres {
        include_str!("../migrations/postgres/0012_session_activity.sql")
    } else {
        include_str!("../migrations/sqlite/0012_session_activity.sql")
    };
    let update = migration
        .split(';')
        .map(|statement| {
            let lines = statement
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"));
            lines.collect::<Vec<_>>().join("\n")
        })
        .find(|statement| statement.trim_start().starts_with("UPDATE"))
        .unwrap();
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&f.raw).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    sqlx::query(&update).execute(&raw).await.unwrap();
    // Read without the store, whose caches are not told of a raw write.
    let used = |id: &'static str| {
        let raw = raw.clone();
        async move {
            sqlx::query_scalar::<_, Option<i64>>("SELECT last_used_at FROM tokens WHERE id = $1")
                .bind(id)
                .fetch_one(&raw)
                .await
                .unwrap()
        }
    };
    let live = used("tok_live")
        .await
        .expect("a live session is marked used");
    let live = Timestamp::from_unix_nanos(live).unix_secs();
    assert!(live.abs_diff(now) < 60, "{live} vs {now}");
    assert_eq!(used("tok_gone").await, None);
    assert_eq!(used("tok_api").await, None);
    raw.close().await;
}

async fn ledger_appends_and_proofs(f: &Fixture) {
    use chaperone_ledger::merkle;
    assert_eq!(f.store.ledger_size().await.unwrap(), 0);
    let entries: Vec<Vec<u8>> = (0..300u32)
        .map(|i| format!("{{\"seq\":{i}}}").into_bytes())
        .collect();
    let mut size = 0usize;
    for batch in [1usize, 2, 61, 100, 136] {
        let first = f
            .store
            .append_ledger(entries[size..size + batch].to_vec())
            .await
            .unwrap();
        assert_eq!(first, size as u64);
        size += batch;
    }
    assert_eq!(f.store.ledger_size().await.unwrap(), 300);
    let leaves: Vec<merkle::Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
    let expected = merkle::root(300, &leaves[..]).unwrap();
    let needed = merkle::nodes_needed(|r| merkle::root(300, r));
    let nodes = f.store.ledger_tiles_for(&needed).await.unwrap();
    assert_eq!(merkle::root(300, &nodes).unwrap(), expected);
    // An inclusion proof from the stored hashes verifies against the head.
    let needed = merkle::nodes_needed(|r| merkle::inclusion_proof(123, 300, r));
    let nodes = f.store.ledger_tiles_for(&needed).await.unwrap();
    let proof = merkle::inclusion_proof(123, 300, &nodes).unwrap();
    merkle::verify_inclusion(123, 300, &leaves[123], &proof, &expected).unwrap();
    let read = f.store.ledger_entries(298, 400).await.unwrap();
    assert_eq!(
        read,
        [(298, entries[298].clone()), (299, entries[299].clone())]
    );
    // Concurrent appends get distinct, gapless indices.
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let store = f.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append_ledger(vec![format!("c{i}").into_bytes()])
                .await
                .unwrap()
        }));
    }
    let mut firsts = Vec::new();
    for t in tasks {
        firsts.push(t.await.unwrap());
    }
    firsts.sort();
    assert_eq!(firsts, (300..308).collect::<Vec<_>>());
    let all = f.store.ledger_entries(0, 308).await.unwrap();
    let leaves: Vec<merkle::Hash> = all.iter().map(|(_, e)| merkle::leaf_hash(e)).collect();
    let needed = merkle::nodes_needed(|r| merkle::root(308, r));
    let nodes = f.store.ledger_tiles_for(&needed).await.unwrap();
    assert_eq!(
        merkle::root(308, &nodes).unwrap(),
        merkle::root(308, &leaves[..]).unwrap()
    );
}

async fn a_changed_upper_hash_tile_fails_the_audit(f: &Fixture) {
    // Past 65,536 entries the head is made from a level-2 node: the level-1 hashes under it
    // are read by proofs only, so the audit must check them on their own.
    let size = 65_536 + 100;
    for start in (0..size).step_by(8192) {
        let events = (start..(start + 8192).min(size))
            .map(|_| event("test.fill"))
            .collect();
        f.store.append_events(events).await.unwrap();
    }
    let (audited_size, _) = f.store.audit_ledger(&[]).await.unwrap();
    assert_eq!(audited_size, size as u64);
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&f.raw).await.unwrap();
    let mut tile: Vec<u8> =
        sqlx::query_scalar("SELECT data FROM ledger_tiles WHERE level = 1 AND idx = 0")
            .fetch_one(&raw)
            .await
            .unwrap();
    tile[5 * 32] ^= 1;
    sqlx::query("UPDATE ledger_tiles SET data = $1 WHERE level = 1 AND idx = 0")
        .bind(tile)
        .execute(&raw)
        .await
        .unwrap();
    let changed = f.store.audit_ledger(&[]).await.unwrap_err().to_string();
    assert!(changed.contains("tile"), "{changed}");
}

/// Entries removed from the database's tail (or, on SQLite, where the server is the only
/// writer, added to it) by anyone but the committer: every write fails while that lasts,
/// and so does asking for the head to sign.
async fn a_tail_changed_outside_the_committer_is_never_built_on(f: &Fixture) {
    let entries: Vec<Vec<u8>> = (0..5u32)
        .map(|i| format!("{{\"entry\":{i}}}").into_bytes())
        .collect();
    let one = || f.store.append_ledger(entries[..1].to_vec());
    f.store.append_ledger(entries.clone()).await.unwrap();
    let (size, root) = f.store.ledger_committed_head(0).await.unwrap();
    assert_eq!(size, 5);
    assert_eq!(root, f.store.ledger_root(5).await.unwrap());
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&f.raw).await.unwrap();
    let set_size = |n: u64| {
        sqlx::query("UPDATE ledger_head SET size = $1 WHERE id = 1")
            .bind(n as i64)
            .execute(&raw)
    };
    // Another node appending (PostgreSQL) is taken in; on SQLite nobody else writes.
    let sqlite = f.url.backend() == chaperone_store::Backend::Sqlite;
    let other = match sqlite {
        true => None,
        false => Some(Store::connect(&f.url).await.unwrap()),
    };
    if let Some(other) = &other {
        other.append_ledger(entries[..1].to_vec()).await.unwrap();
        assert_eq!(f.store.ledger_committed_head(0).await.unwrap().0, 6);
    }
    let before = f.store.ledger_committed_head(0).await.unwrap();
    let tampered = |err: StoreError| {
        assert!(
            err.to_string().contains("outside this server")
                && err.to_string().contains(&format!("committed {}", before.0)),
            "{err}"
        );
    };
    // The last entry erased: nothing more is written or signed.
    set_size(before.0 - 1).await.unwrap();
    for _ in 0..2 {
        tampered(one().await.unwrap_err());
        tampered(f.store.ledger_committed_head(0).await.unwrap_err());
    }
    // Put back, the log goes on from where the committer left it.
    set_size(before.0).await.unwrap();
    assert_eq!(one().await.unwrap(), before.0);
    if sqlite {
        // An entry added: refused as well.
        set_size(before.0 + 2).await.unwrap();
        for err in [
            one().await.unwrap_err(),
            f.store.ledger_committed_head(0).await.unwrap_err(),
        ] {
            let added = format!("holds {} entries", before.0 + 2);
            assert!(err.to_string().contains(&added), "{err}");
        }
        set_size(before.0 + 1).await.unwrap();
        assert_eq!(one().await.unwrap(), before.0 + 1);
    }
    if let Some(other) = other {
        other.close().await;
    }
}

/// A partial bundle grows by chunks, also after one stored whole (as older versions did),
/// and a bundle that fills is stored whole without its chunks.
async fn partial_bundles_are_appended_in_chunks(f: &Fixture) {
    use chaperone_ledger::tiles::{TileId, TileKind, encode_bundle};
    let entries: Vec<Vec<u8>> = (0..300u32)
        .map(|i| format!("{{\"entry\":{i}}}").into_bytes())
        .collect();
    let bundle = |index: u64, width: u64| TileId {
        kind: TileKind::Entries,
        index,
        width,
    };
    let encoded = |range: std::ops::Range<usize>| {
        encode_bundle(entries[range].iter().map(Vec::as_slice)).unwrap()
    };
    f.store.append_ledger(entries[..10].to_vec()).await.unwrap();
    // The older layout: the partial bundle as one row, no chunks.
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&f.raw).await.unwrap();
    sqlx::query("DELETE FROM ledger_bundle_chunks")
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query("INSERT INTO ledger_bundles (idx, width, data) VALUES (0, 10, $1)")
        .bind(encoded(0..10))
        .execute(&raw)
        .await
        .unwrap();
    f.store
        .append_ledger(entries[10..15].to_vec())
        .await
        .unwrap();
    f.store
        .append_ledger(entries[15..20].to_vec())
        .await
        .unwrap();
    let tile = f.store.ledger_tile(bundle(0, 20)).await.unwrap().unwrap();
    assert_eq!(tile, encoded(0..20));
    let tile = f.store.ledger_tile(bundle(0, 12)).await.unwrap().unwrap();
    assert_eq!(tile, encoded(0..12));
    assert_eq!(f.store.ledger_tile(bundle(0, 21)).await.unwrap(), None);
    let read = f.store.ledger_entries(5, 20).await.unwrap();
    assert_eq!(read.len(), 15);
    assert!(read.iter().all(|(seq, e)| *e == entries[*seq as usize]));
    // Fill bundle 0 and start bundle 1, from a store that loads the edge afresh.
    f.store.close().await;
    let again = Store::connect(&f.url).await.unwrap();
    again
        .append_ledger(entries[20..270].to_vec())
        .await
        .unwrap();
    again
        .append_ledger(entries[270..300].to_vec())
        .await
        .unwrap();
    let tile = again.ledger_tile(bundle(0, 256)).await.unwrap().unwrap();
    assert_eq!(tile, encoded(0..256));
    let tile = again.ledger_tile(bundle(1, 44)).await.unwrap().unwrap();
    assert_eq!(tile, encoded(256..300));
    let chunks: Vec<i64> =
        sqlx::query_scalar("SELECT idx FROM ledger_bundle_chunks ORDER BY idx, first")
            .fetch_all(&raw)
            .await
            .unwrap();
    assert_eq!(chunks, [1, 1], "bundle 0 is whole, bundle 1 is two chunks");
    let read = again.ledger_entries(0, 300).await.unwrap();
    assert_eq!(
        read.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        entries
    );
    // A chunk that does not follow what is stored is reported, not skipped.
    sqlx::query("UPDATE ledger_bundle_chunks SET first = 40 WHERE first = 14")
        .execute(&raw)
        .await
        .unwrap();
    assert!(matches!(
        again.ledger_tile(bundle(1, 44)).await,
        Err(StoreError::Corrupt(_))
    ));
    raw.close().await;
    again.close().await;
}

/// Closing commits what was acknowledged and stops the committer; with SQLite the database
/// file alone then holds everything (the write-ahead log is folded in).
async fn closing_commits_then_stops(f: &Fixture) {
    put(f, "closing/a", "one", Cas::None).await.unwrap();
    f.store.append_ledger(vec![b"kept".to_vec()]).await.unwrap();
    f.store.close().await;
    assert!(matches!(
        f.store.append_ledger(vec![b"late".to_vec()]).await,
        Err(StoreError::LedgerWrite(_))
    ));
    if let Some(file) = f.url.sqlite_path() {
        let copy = file.with_file_name("copy.db");
        std::fs::copy(file, &copy).unwrap();
        let store = Store::connect(&DatabaseUrl::sqlite_file(&copy))
            .await
            .unwrap();
        assert_eq!(store.ledger_size().await.unwrap(), 1);
        let stored = store.read_version(&path("closing/a"), None).await.unwrap();
        assert_eq!(stored.map(|s| s.meta.version), Some(1));
        store.close().await;
    }
}

/// Hundreds of concurrent changes, some refused, share batches larger than a savepoint
/// group: each stands or falls alone.
async fn large_batches_keep_each_change_apart(f: &Fixture) {
    let mut tasks = Vec::new();
    for i in 0..300u32 {
        let store = f.store.clone();
        let ring = Arc::clone(&f.ring);
        tasks.push(tokio::spawn(async move {
            // Every third write asks for a version that does not exist.
            let cas = if i % 3 == 0 {
                Cas::Version(7)
            } else {
                Cas::Version(0)
            };
            let value = format!("v{i}");
            store
                .put_version(
                    &path(&format!("batch/{i}")),
                    cas,
                    DEFAULTS,
                    t(1),
                    &[event("secret.write")],
                    move |b| ring.seal(b, value.as_bytes()),
                )
                .await
                .map(|written| written.meta.version)
        }));
    }
    let mut written = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(version) => {
                assert_ne!(i % 3, 0);
                assert_eq!(version, 1);
                written += 1;
            }
            Err(e) => {
                assert_eq!(i % 3, 0);
                assert!(matches!(e, StoreError::Kv(KvError::CasMismatch { .. })));
            }
        }
    }
    assert_eq!(written, 200);
    assert_eq!(f.store.ledger_size().await.unwrap(), 200);
    for i in [0u32, 1, 2, 298, 299] {
        let stored = read(f, &format!("batch/{i}"), None).await;
        assert_eq!(stored, (i % 3 != 0).then(|| format!("v{i}")));
    }
    let paths = f.store.secret_paths("batch").await.unwrap();
    assert_eq!(paths.len(), 200);
}

fn event(action: &str) -> chaperone_ledger::entry::Event {
    chaperone_ledger::entry::Event {
        time: t(0).to_rfc3339(),
        actor: Default::default(),
        action: action.into(),
        resource: "x".into(),
        outcome: chaperone_ledger::entry::Outcome::Success,
        reasons: Vec::new(),
        request_id: "req".into(),
        client_ip: None,
        user_agent: None,
        details: Default::default(),
    }
}

async fn a_lapsed_account_is_disabled_once(f: &Fixture) {
    f.store.insert_vendor(&vendor("v1"), &[]).await.unwrap();
    let mut p = person_record("p1", Some("v1"));
    p.ends_at = Some(t(5));
    f.store
        .insert_person(&p, &[1; 32], t(100), &[])
        .await
        .unwrap();
    let disable = |ends_at| Op::DisableLapsed {
        id: "p1".into(),
        at: t(6),
        ends_at,
    };
    let size = f.store.ledger_size().await.unwrap();
    f.store
        .apply(vec![disable(Some(t(5)))], vec![event("person.disable")])
        .await
        .unwrap();
    // A second sweep that read the account before the first disabled it changes nothing
    // and records nothing.
    let again = f
        .store
        .apply(vec![disable(Some(t(5)))], vec![event("person.disable")])
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(f.store.ledger_size().await.unwrap(), size + 1);
    // Enabled again with a later end: a disable decided on the old end is refused.
    f.store.set_person_disabled("p1", None, &[]).await.unwrap();
    f.store
        .apply(
            vec![Op::SetPersonEnd {
                id: "p1".into(),
                ends_at: Some(t(50)),
            }],
            Vec::new(),
        )
        .await
        .unwrap();
    let stale = f.store.apply(vec![disable(Some(t(5)))], Vec::new()).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let person = f.store.person("p1").await.unwrap().unwrap();
    assert_eq!(person.disabled_at, None);
}

async fn changes_and_their_events_commit_together(f: &Fixture) {
    let write = event("secret.write");
    f.store
        .put_version(
            &path("x"),
            Cas::Version(0),
            DEFAULTS,
            t(1),
            std::slice::from_ref(&write),
            seal(f, b"v"),
        )
        .await
        .unwrap();
    assert_eq!(f.store.ledger_size().await.unwrap(), 1);
    // A refused change records nothing.
    assert!(
        f.store
            .put_version(
                &path("x"),
                Cas::Version(0),
                DEFAULTS,
                t(2),
                std::slice::from_ref(&write),
                seal(f, b"w")
            )
            .await
            .is_err()
    );
    assert_eq!(f.store.ledger_size().await.unwrap(), 1);
    f.store
        .delete_versions(&path("x"), &[1], t(3), &[event("secret.delete")])
        .await
        .unwrap();
    f.store
        .update_metadata(
            &path("x"),
            &MetadataUpdate::default(),
            t(4),
            &[event("secret.metadata_write")],
        )
        .await
        .unwrap();
    assert!(
        !f.store
            .delete_secret(&path("nope"), &[event("secret.destroy")])
            .await
            .unwrap()
    );
    assert!(
        f.store
            .delete_secret(&path("x"), &[event("secret.destroy")])
            .await
            .unwrap()
    );
    let entries = f.store.ledger_entries(0, 10).await.unwrap();
    let actions: Vec<String> = entries
        .iter()
        .map(|(_, e)| {
            serde_json::from_slice::<serde_json::Value>(e).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        actions,
        [
            "secret.write",
            "secret.delete",
            "secret.metadata_write",
            "secret.destroy"
        ]
    );
}

/// The actions of the ledger's entries, in order.
async fn ledger_actions(f: &Fixture) -> Vec<String> {
    let size = f.store.ledger_size().await.unwrap();
    f.store
        .ledger_entries(0, size)
        .await
        .unwrap()
        .iter()
        .map(|(_, e)| {
            serde_json::from_slice::<serde_json::Value>(e).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

async fn identity_and_token_changes_record_only_what_happened(f: &Fixture) {
    f.store
        .insert_vendor(&vendor("v1"), &[event("vendor.create")])
        .await
        .unwrap();
    // A duplicate is refused and records nothing.
    assert!(
        f.store
            .insert_vendor(&vendor("v1"), &[event("vendor.create")])
            .await
            .is_err()
    );
    assert_eq!(ledger_actions(f).await, ["vendor.create"]);
    // Revoking a token that does not exist changes nothing and records nothing.
    assert!(
        f.store
            .revoke_token("tok_missing", t(1), revoke_event)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        f.store
            .apply(
                vec![Op::UpdateVendor {
                    vendor: suspended("nope"),
                    previous_status: "active".into(),
                    previous_updated_at: t(0),
                    at: t(1),
                }],
                vec![event("vendor.update")]
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(f.store.ledger_size().await.unwrap(), 1);
    // A real vendor update records exactly one entry, with the change.
    f.store
        .apply(
            vec![Op::UpdateVendor {
                vendor: suspended("v1"),
                previous_status: "active".into(),
                previous_updated_at: t(0),
                at: t(2),
            }],
            vec![event("vendor.update")],
        )
        .await
        .unwrap();
    assert_eq!(ledger_actions(f).await, ["vendor.create", "vendor.update"]);
    assert_eq!(
        f.store.vendor("v1").await.unwrap().unwrap().status,
        "suspended"
    );
    // An enrolment code records only when it is used, once.
    f.store
        .insert_person(
            &person_record("p1", Some("v1")),
            &[3u8; 32],
            t(100),
            &[event("person.create")],
        )
        .await
        .unwrap();
    assert_eq!(
        f.store
            .enrolment_person(&[3u8; 32])
            .await
            .unwrap()
            .unwrap()
            .id,
        "p1"
    );
    assert_eq!(f.store.enrolment_person(&[4u8; 32]).await.unwrap(), None);
    for expected in [true, false] {
        let enrolled = f
            .store
            .complete_enrolment(
                &[3u8; 32],
                t(3),
                "h",
                |_| vec![1],
                &[],
                &[event("auth.enroll")],
            )
            .await
            .unwrap();
        assert_eq!(enrolled.is_some(), expected);
    }
    // A token made and revoked twice: one entry each for what happened.
    let token = TokenRecord {
        created_at: t(4),
        expires_at: Some(t(100)),
        person_id: Some("p1".into()),
        ..api_token("tok_1", "ci", "member")
    };
    f.store
        .insert_token(&token, &[event("token.create")])
        .await
        .unwrap();
    assert!(
        !f.store
            .revoke_token("tok_1", t(5), revoke_event)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        f.store
            .revoke_token("tok_1", t(6), revoke_event)
            .await
            .unwrap()
            .is_empty()
    );
    // An unlock with nothing to forget records nothing; one that lifts failures does.
    assert!(
        !f.store
            .lift_lockout(&["account:x".into()], &[event("person.unlock")])
            .await
            .unwrap()
    );
    f.store
        .record_auth_failure(&["account:x".to_owned()], t(7))
        .await
        .unwrap();
    assert!(
        f.store
            .lift_lockout(&["account:x".into()], &[event("person.unlock")])
            .await
            .unwrap()
    );
    assert_eq!(
        ledger_actions(f).await,
        [
            "vendor.create",
            "vendor.update",
            "person.create",
            "auth.enroll",
            "token.create",
            "token.revoke",
            "person.unlock",
        ]
    );
}

async fn wrapped_responses_are_taken_once(f: &Fixture) {
    use chaperone_store::WrappedRecord;
    let token = ApiToken::generate();
    let record = WrappedRecord {
        hash: token.hash(),
        accessor: "wrap_1".into(),
        sealed: vec![1, 2, 3],
        creation_path: "secret/data/x".into(),
        created_at: t(0),
        expires_at: t(100),
        created_by: Some("per_wrapper".into()),
        // A status other than 200 is kept (a wrapped read of a deleted version).
        status: 404,
    };
    // Stored only while the token whose request it answers is live (none here by that id).
    let refused = f
        .store
        .insert_wrapped(&record, &[event("wrap.create")], Some("tok_gone"), None)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(f.store.wrapped(&token.hash(), t(1)).await.unwrap(), None);
    f.store
        .insert_wrapped(&record, &[event("wrap.create")], None, None)
        .await
        .unwrap();
    assert_eq!(
        f.store.wrapped(&token.hash(), t(1)).await.unwrap(),
        Some(record.clone())
    );
    let before = f.store.ledger_size().await.unwrap();
    assert_eq!(
        f.store.spent_wrapping(&token.hash(), t(1)).await.unwrap(),
        None
    );
    let taken = f
        .store
        .take_wrapped(&token.hash(), t(2), false, None, |_, _| {
            vec![event("wrap.unwrap")]
        })
        .await
        .unwrap();
    assert_eq!(taken, Some((record, None)));
    assert_eq!(f.store.ledger_size().await.unwrap(), before + 1);
    // Once only, and nothing recorded for a miss.
    let again = f
        .store
        .take_wrapped(&token.hash(), t(3), false, None, |_, _| {
            vec![event("wrap.unwrap")]
        })
        .await
        .unwrap();
    assert_eq!(again, None);
    assert_eq!(f.store.ledger_size().await.unwrap(), before + 1);
    // What is kept of it tells its token from one never made, until it would have expired,
    // when the sweep's purge removes it.
    let spent = f.store.spent_wrapping(&token.hash(), t(3)).await.unwrap();
    let spent = spent.expect("kept as spent");
    assert_eq!(
        (
            spent.accessor.as_str(),
            spent.creation_path.as_str(),
            spent.why.as_str()
        ),
        ("wrap_1", "secret/data/x", "used")
    );
    assert_eq!(spent.spent_at, t(2));
    assert_eq!(
        f.store.spent_wrapping(&token.hash(), t(100)).await.unwrap(),
        None
    );
    f.store
        .purge_expired_wrapped(t(100), 100, |_| Vec::new())
        .await
        .unwrap();
    assert_eq!(
        f.store.spent_wrapping(&token.hash(), t(99)).await.unwrap(),
        None
    );
    // Revoked by its accessor, or with its maker's tokens: kept as revoked.
    let revoked = ApiToken::generate();
    let by_accessor = WrappedRecord {
        hash: revoked.hash(),
        accessor: "wrap_3".into(),
        sealed: vec![5],
        creation_path: "sys/wrapping/wrap".into(),
        created_at: t(0),
        expires_at: t(100),
        created_by: None,
        status: 200,
    };
    f.store
        .insert_wrapped(&by_accessor, &[], None, None)
        .await
        .unwrap();
    f.store
        .revoke_wrapped("wrap_3", t(4), |_| Some(Vec::new()))
        .await
        .unwrap();
    let spent = f.store.spent_wrapping(&revoked.hash(), t(5)).await.unwrap();
    assert_eq!(spent.map(|s| s.why), Some("revoked".into()));
    // An expired one is neither shown nor handed out.
    let late = ApiToken::generate();
    let expired = WrappedRecord {
        hash: late.hash(),
        accessor: "wrap_2".into(),
        sealed: vec![4],
        creation_path: "sys/wrapping/wrap".into(),
        created_at: t(0),
        expires_at: t(10),
        created_by: None,
        status: 200,
    };
    f.store
        .insert_wrapped(&expired, &[], None, None)
        .await
        .unwrap();
    assert_eq!(f.store.wrapped(&late.hash(), t(10)).await.unwrap(), None);
    let taken = f
        .store
        .take_wrapped(&late.hash(), t(11), false, None, |_, _| {
            vec![event("wrap.unwrap")]
        })
        .await
        .unwrap();
    assert_eq!(taken, None);
    assert_eq!(
        f.store.spent_wrapping(&late.hash(), t(11)).await.unwrap(),
        None
    );

    // A wrapped read is handed out only while the version it holds is readable, as the
    // change that takes it sees it: destroyed, deleted, or written again after the secret was
    // deleted whole, it is taken as refused, and `events_for` is told why.
    use chaperone_store::{HeldVersion, VersionGone};
    put(f, "wrapped/db", "v1", Cas::None).await.unwrap();
    put(f, "wrapped/api", "v1", Cas::None).await.unwrap();
    let written = |p: &str| {
        let p = path(p);
        let store = f.store.clone();
        async move {
            store
                .read_version(&p, Some(1))
                .await
                .unwrap()
                .unwrap()
                .meta
                .created_at
        }
    };
    let take = |held: HeldVersion| {
        let token = ApiToken::generate();
        let record = WrappedRecord {
            hash: token.hash(),
            accessor: format!("wrap_{}_{}", held.path, held.created_at.unix_nanos()),
            sealed: vec![9],
            creation_path: format!("secret/data/{}", held.path),
            created_at: t(0),
            expires_at: t(100),
            created_by: None,
            status: 200,
        };
        let store = f.store.clone();
        async move {
            store
                .insert_wrapped(&record, &[], None, None)
                .await
                .unwrap();
            let taken = store
                .take_wrapped(&token.hash(), t(20), false, Some(held), |_, gone| {
                    vec![event(gone.map_or("wrap.unwrap", VersionGone::code))]
                })
                .await
                .unwrap()
                .expect("taken");
            let spent = store
                .spent_wrapping(&token.hash(), t(21))
                .await
                .unwrap()
                .unwrap();
            (taken.1, spent.why)
        }
    };
    let held = |p: &str, created_at| HeldVersion {
        path: p.into(),
        version: 1,
        created_at,
    };
    let db_written = written("wrapped/db").await;
    assert_eq!(
        take(held("wrapped/db", db_written)).await,
        (None, "used".into())
    );
    f.store
        .destroy_versions(&path("wrapped/db"), &[1], t(12), &[])
        .await
        .unwrap();
    assert_eq!(
        take(held("wrapped/db", db_written)).await,
        (Some(VersionGone::Destroyed), "refused".into())
    );
    let api_written = written("wrapped/api").await;
    f.store
        .delete_versions(&path("wrapped/api"), &[1], t(12), &[])
        .await
        .unwrap();
    assert_eq!(
        take(held("wrapped/api", api_written)).await.0,
        Some(VersionGone::Deleted)
    );
    assert_eq!(
        take(held("wrapped/api", t(5))).await.0,
        Some(VersionGone::Gone),
        "another write's version 1"
    );
    assert_eq!(
        take(held("wrapped/none", t(1))).await.0,
        Some(VersionGone::Gone)
    );
}

/// Two stores on one database (two server nodes on PostgreSQL, two processes on SQLite)
/// append concurrently: each committer reloads the tree's edge when the other moved it, and
/// the log stays one gapless, verifiable tree.
async fn two_stores_append_to_one_log(f: &Fixture) {
    use chaperone_ledger::audit::{Audit, BundleInput};
    use chaperone_ledger::tiles::{TileId, TileKind, split_tile};
    let Some(other) = second_store(f).await else {
        return;
    };
    let start = f.store.ledger_size().await.unwrap();
    let mut tasks = Vec::new();
    for (n, store) in [f.store.clone(), other.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..150u32 {
                let e = event(&format!("node{n}.{i}"));
                store.append_events(vec![e.clone(), e]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let size = f.store.ledger_size().await.unwrap();
    assert_eq!(size, start + 600);
    // Every entry is where its sequence number says, every stored leaf hash matches, and the
    // stored tiles give the same head as the entries.
    let mut audit = Audit::new(size, &[]);
    let wanted: Vec<(u64, u64)> = audit.wanted().collect();
    let mut fetched = Vec::new();
    for (index, width) in wanted {
        let bundle = TileId {
            kind: TileKind::Entries,
            index,
            width,
        };
        let tile = TileId {
            kind: TileKind::Hashes(0),
            index,
            width,
        };
        let data = other.ledger_tile(bundle).await.unwrap().unwrap();
        let leaves =
            split_tile(0, index, &f.store.ledger_tile(tile).await.unwrap().unwrap()).unwrap();
        fetched.push((index, width, data, leaves));
    }
    let inputs: Vec<BundleInput<'_>> = fetched
        .iter()
        .map(|(index, width, data, leaves)| BundleInput {
            index: *index,
            width: *width,
            data,
            leaf_tile: Some(leaves),
        })
        .collect();
    audit.bundles(&inputs).unwrap();
    let root = audit.finish().unwrap().root;
    let needed =
        chaperone_ledger::merkle::nodes_needed(|r| chaperone_ledger::merkle::root(size, r));
    let tiles = other.ledger_tiles_for(&needed).await.unwrap();
    assert_eq!(chaperone_ledger::merkle::root(size, &tiles).unwrap(), root);
    other.close().await;
}

fn record(kind: &str, id: &str, owner: Option<&str>, body: serde_json::Value) -> Record {
    Record {
        kind: kind.into(),
        id: id.into(),
        owner: owner.map(Into::into),
        body,
        revision: 1,
        created_at: t(1),
        updated_at: t(1),
    }
}

/// What a change closes by status includes records added after its caller read them.
async fn records_are_revised_by_what_they_hold_as_the_change_runs(f: &Fixture) {
    use serde_json::json;
    let pending = record(
        "request",
        "req_1",
        Some("per_1"),
        json!({ "status": "pending" }),
    );
    let approved = record(
        "request",
        "req_2",
        Some("per_1"),
        json!({ "status": "approved" }),
    );
    let other = record(
        "request",
        "req_3",
        Some("per_2"),
        json!({ "status": "pending" }),
    );
    let late = record(
        "request",
        "req_4",
        Some("per_1"),
        json!({ "status": "pending" }),
    );
    f.store
        .apply(
            vec![
                Op::Put(pending),
                Op::Put(approved.clone()),
                Op::Put(other.clone()),
            ],
            Vec::new(),
        )
        .await
        .unwrap();
    let mut set = serde_json::Map::new();
    set.insert("status".into(), "cancelled".into());
    set.insert("denial".into(), json!({ "by": "per_9" }));
    let close = Op::ReviseRecordsWhere {
        kind: "request".into(),
        owner: "per_1".into(),
        field: "status".into(),
        equals: "pending".into(),
        set,
        at: t(9),
    };
    // Filed after the caller read the list, in the same change here: closed all the same.
    f.store
        .apply(vec![Op::Put(late), close], vec![event("person.disable")])
        .await
        .unwrap();
    for id in ["req_1", "req_4"] {
        let closed = f.store.record("request", id).await.unwrap().unwrap();
        assert_eq!(
            closed.body,
            json!({ "status": "cancelled", "denial": { "by": "per_9" } })
        );
        assert_eq!((closed.revision, closed.updated_at), (2, t(9)));
    }
    assert_eq!(
        f.store.record("request", "req_2").await.unwrap(),
        Some(approved)
    );
    assert_eq!(
        f.store.record("request", "req_3").await.unwrap(),
        Some(other)
    );
}

async fn governance_records_are_revisioned_and_atomic(f: &Fixture) {
    use serde_json::json;
    let a1 = record("agreement", "agr_1", Some("v1"), json!({ "kind": "nda" }));
    let a2 = record("agreement", "agr_2", Some("v2"), json!({ "kind": "dpa" }));
    f.store
        .apply(
            vec![Op::Put(a1.clone()), Op::Put(a2.clone())],
            vec![event("agreement.create")],
        )
        .await
        .unwrap();
    assert_eq!(
        f.store.record("agreement", "agr_1").await.unwrap(),
        Some(a1.clone())
    );
    assert_eq!(
        f.store.records("agreement", Some("v2")).await.unwrap(),
        std::slice::from_ref(&a2)
    );
    assert_eq!(f.store.records("agreement", None).await.unwrap().len(), 2);
    assert_eq!(f.store.record("evidence", "agr_1").await.unwrap(), None);

    // Creating what exists, or updating from a stale revision, is a conflict.
    assert!(matches!(
        f.store.apply(vec![Op::Put(a1.clone())], Vec::new()).await,
        Err(StoreError::Conflict(_))
    ));
    let mut next = a1.clone();
    next.body = json!({ "kind": "nda", "terminated": true });
    next.revision = 2;
    next.updated_at = t(5);
    f.store
        .apply(vec![Op::Put(next.clone())], Vec::new())
        .await
        .unwrap();
    assert_eq!(
        f.store.record("agreement", "agr_1").await.unwrap(),
        Some(next.clone())
    );
    // A second writer that also read revision 1 loses, and nothing of its change lands:
    // not the grant before the stale update, not its ledger entry.
    f.store
        .insert_person(&person_record("p-x", None), &[9u8; 32], t(100), &[])
        .await
        .unwrap();
    let before = f.store.ledger_size().await.unwrap();
    let grant = GrantRecord {
        id: "g-atomic".into(),
        person_id: "p-x".into(),
        prefix: "acme".into(),
        capabilities: vec!["read".into()],
        expires_at: t(50),
        created_at: t(0),
        created_by: "per_a".into(),
        revoked_at: None,
        request_id: Some("req_1".into()),
        break_glass: true,
        reason: None,
        reviewed: None,
        terms: Some(GrantTerms {
            approvals: 1,
            secs: 50,
        }),
    };
    let stale = f
        .store
        .apply(
            vec![Op::InsertGrant(grant.clone()), Op::Put(next.clone())],
            vec![event("grant.create")],
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(f.store.grant("g-atomic").await.unwrap(), None);
    assert_eq!(f.store.ledger_size().await.unwrap(), before);

    // Grants: insert, extend, review, revoke, through one path.
    f.store
        .apply(vec![Op::InsertGrant(grant.clone())], Vec::new())
        .await
        .unwrap();
    assert_eq!(
        f.store.active_grants(t(10)).await.unwrap(),
        std::slice::from_ref(&grant)
    );
    assert_eq!(
        f.store.unreviewed_break_glass().await.unwrap(),
        std::slice::from_ref(&grant),
        "listed for review whether or not it has expired"
    );
    assert!(f.store.active_grants(t(50)).await.unwrap().is_empty());
    f.store
        .apply(
            vec![
                Op::ExtendGrant {
                    id: "g-atomic".into(),
                    at: t(11),
                    expires_at: t(90),
                    terms: GrantTerms {
                        approvals: 2,
                        secs: 80,
                    },
                },
                Op::ReviewGrant {
                    id: "g-atomic".into(),
                    at: t(11),
                    by: "per_b".into(),
                },
            ],
            Vec::new(),
        )
        .await
        .unwrap();
    let g = f.store.grant("g-atomic").await.unwrap().unwrap();
    assert_eq!(g.expires_at, t(90));
    // The extension's approvals and length replace the grant's.
    assert_eq!(
        g.terms,
        Some(GrantTerms {
            approvals: 2,
            secs: 80
        })
    );
    assert_eq!(g.reviewed, Some((t(11), "per_b".into())));
    assert!(f.store.unreviewed_break_glass().await.unwrap().is_empty());
    // An extension approved after the grant ended does not bring it back.
    assert!(matches!(
        f.store
            .apply(
                vec![Op::ExtendGrant {
                    id: "g-atomic".into(),
                    at: t(90),
                    expires_at: t(150),
                    terms: GrantTerms {
                        approvals: 1,
                        secs: 60
                    },
                }],
                Vec::new()
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    // A second review is refused.
    assert!(matches!(
        f.store
            .apply(
                vec![Op::ReviewGrant {
                    id: "g-atomic".into(),
                    at: t(12),
                    by: "per_c".into()
                }],
                Vec::new()
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    f.store
        .apply(
            vec![Op::RevokeGrant {
                id: "g-atomic".into(),
                at: t(12),
            }],
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(f.store.active_grants(t(13)).await.unwrap().is_empty());
    // A revoked grant cannot be extended.
    assert!(matches!(
        f.store
            .apply(
                vec![Op::ExtendGrant {
                    id: "g-atomic".into(),
                    at: t(12),
                    expires_at: t(99),
                    terms: GrantTerms {
                        approvals: 1,
                        secs: 9
                    },
                }],
                Vec::new()
            )
            .await,
        Err(StoreError::Conflict(_))
    ));

    // A person's grants are revoked together, whatever was read before.
    for id in ["g-y1", "g-y2"] {
        let mut other = grant.clone();
        other.id = id.into();
        other.expires_at = t(500);
        f.store
            .apply(vec![Op::InsertGrant(other)], Vec::new())
            .await
            .unwrap();
    }
    assert_eq!(f.store.grants_of("p-x").await.unwrap().len(), 2);
    f.store
        .apply(
            vec![Op::RevokeGrantsOf {
                person_id: "p-x".into(),
                at: t(20),
            }],
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(f.store.grants_of("p-x").await.unwrap().is_empty());
    assert_eq!(
        f.store.grant("g-y2").await.unwrap().unwrap().revoked_at,
        Some(t(20))
    );

    let doc = DocumentRecord {
        id: "doc_1".into(),
        owner: "agr_1".into(),
        name: "nda.pdf".into(),
        media_type: "application/pdf".into(),
        size: 3,
        sha256: "ab".repeat(32),
        sealed: vec![1, 2, 3, 0, 255],
        created_at: t(3),
    };
    f.store
        .apply(vec![Op::PutDocument(doc.clone())], Vec::new())
        .await
        .unwrap();
    assert_eq!(f.store.document("doc_1").await.unwrap(), Some(doc));
    assert_eq!(f.store.document("doc_2").await.unwrap(), None);
}

fn share_record(id: &str, views: i64, expires: i64) -> ShareRecord {
    ShareRecord {
        id: id.into(),
        created_by: "per_a".into(),
        created_at: t(0),
        expires_at: t(expires),
        max_views: views,
        views: 0,
        passphrase_hash: None,
        proof_hash: String::new(),
        restricted_to: None,
        label: "db password".into(),
        size: 5,
        has_content: false,
        destroyed: None,
    }
}

async fn shares_are_opened_a_counted_number_of_times_and_destroyed(f: &Fixture) {
    // A share is made only with a live token.
    let maker = api_token("tok_sharer", "sharer", "member");
    f.store.insert_token(&maker, &[]).await.unwrap();
    let refused = f
        .store
        .insert_share(&share_record("shr_0", 2, 100), None, "tok_none", &[])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    f.store
        .insert_share(
            &share_record("shr_1", 2, 100),
            None,
            "tok_sharer",
            &[event("share.create")],
        )
        .await
        .unwrap();
    // Nothing to open before the content arrives; content of the wrong size is refused.
    assert_eq!(
        f.store.open_share("shr_1", t(1), &[]).await.unwrap(),
        Opened::Gone
    );
    assert!(
        !f.store
            .put_share_content("shr_1", vec![1, 2, 3], "p", &[])
            .await
            .unwrap()
    );
    assert!(
        f.store
            .put_share_content(
                "shr_1",
                vec![9, 8, 7, 6, 5],
                "proof",
                &[event("share.upload")]
            )
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .put_share_content("shr_1", vec![0; 5], "p", &[])
            .await
            .unwrap(),
        "once"
    );
    let stored = f.store.share("shr_1").await.unwrap().unwrap();
    assert!(stored.has_content);
    assert_eq!(stored.proof_hash, "proof");
    let before = f.store.ledger_size().await.unwrap();
    assert_eq!(
        f.store
            .open_share("shr_1", t(2), &[event("share.open")])
            .await
            .unwrap(),
        Opened::Content {
            ciphertext: vec![9, 8, 7, 6, 5],
            last: false
        }
    );
    assert_eq!(
        f.store
            .open_share("shr_1", t(3), &[event("share.open")])
            .await
            .unwrap(),
        Opened::Content {
            ciphertext: vec![9, 8, 7, 6, 5],
            last: true
        }
    );
    assert_eq!(
        f.store
            .open_share("shr_1", t(4), &[event("share.open")])
            .await
            .unwrap(),
        Opened::Gone
    );
    assert_eq!(
        f.store.ledger_size().await.unwrap(),
        before + 2,
        "only opens that returned content"
    );
    let used = f.store.share("shr_1").await.unwrap().unwrap();
    assert!(!used.has_content);
    assert_eq!(used.views, 2);
    assert_eq!(used.destroyed, Some((t(3), "used".into())));

    // An expired share is not opened; whoever finds it expired (an open, the sweep)
    // destroys it.
    for id in ["shr_2", "shr_3"] {
        f.store
            .insert_share(&share_record(id, 1, 10), None, "tok_sharer", &[])
            .await
            .unwrap();
        f.store
            .put_share_content(id, vec![1; 5], "p", &[])
            .await
            .unwrap();
    }
    assert_eq!(
        f.store
            .open_share("shr_2", t(10), &[event("share.open")])
            .await
            .unwrap(),
        Opened::Expired
    );
    let expired = f.store.share("shr_2").await.unwrap().unwrap();
    assert!(expired.has_content && expired.destroyed.is_none());
    assert_eq!(expired.views, 0);
    assert_eq!(
        f.store.expired_shares(t(11)).await.unwrap(),
        ["shr_2", "shr_3"]
    );
    for id in ["shr_2", "shr_3"] {
        assert!(
            f.store
                .destroy_share(id, "expired", t(11), &[event("share.expire")])
                .await
                .unwrap()
        );
    }
    assert!(
        !f.store
            .destroy_share("shr_3", "revoked", t(12), &[event("share.revoke")])
            .await
            .unwrap()
    );
    assert!(f.store.expired_shares(t(12)).await.unwrap().is_empty());
    assert_eq!(f.store.shares(Some("per_a")).await.unwrap().len(), 3);
    assert!(f.store.shares(Some("per_b")).await.unwrap().is_empty());

    // A limit on what one person's live shares hold counts neither the destroyed nor the
    // expired ones, and is checked in the change.
    let live = |id: &str, size: i64| ShareRecord {
        created_by: "per_b".into(),
        created_at: t(12),
        size,
        ..share_record(id, 1, 100)
    };
    for id in ["shr_4", "shr_5"] {
        f.store
            .insert_share(&live(id, 10), Some(25), "tok_sharer", &[])
            .await
            .unwrap();
    }
    let refused = f
        .store
        .insert_share(&live("shr_6", 10), Some(25), "tok_sharer", &[])
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(m)) if m.starts_with(chaperone_store::SHARE_QUOTA)),
        "{refused:?}"
    );
    assert_eq!(f.store.share("shr_6").await.unwrap(), None);
    f.store
        .destroy_share("shr_4", "revoked", t(13), &[])
        .await
        .unwrap();
    f.store
        .insert_share(&live("shr_6", 10), Some(25), "tok_sharer", &[])
        .await
        .unwrap();
}

/// Reads that are cached (SQLite) see every change at once; with PostgreSQL nothing is
/// cached at all.
async fn cached_reads_follow_every_change(f: &Fixture) {
    let before = f.store.data_generation();
    match f.store.backend() {
        chaperone_store::Backend::Sqlite => assert!(before.is_some()),
        chaperone_store::Backend::Postgres => assert_eq!(before, None),
    }
    put(f, "cache/a", "one", Cas::None).await.unwrap();
    for _ in 0..2 {
        assert_eq!(read(f, "cache/a", None).await.as_deref(), Some("one"));
        assert_eq!(read(f, "cache/a", Some(1)).await.as_deref(), Some("one"));
    }
    let generation = f.store.data_generation();
    put(f, "cache/a", "two", Cas::None).await.unwrap();
    if let (Some(old), Some(new)) = (generation, f.store.data_generation()) {
        assert!(new > old, "a change moves the generation");
    }
    assert_eq!(read(f, "cache/a", None).await.as_deref(), Some("two"));
    assert!(
        f.store
            .destroy_versions(&path("cache/a"), &[1], t(20), &[])
            .await
            .unwrap()
    );
    let destroyed = f
        .store
        .read_version(&path("cache/a"), Some(1))
        .await
        .unwrap()
        .unwrap();
    assert!(
        destroyed.sealed.is_none(),
        "a destroyed version is not served from memory"
    );

    let token = api_token("tok_cache", "cached", "member");
    f.store.insert_token(&token, &[]).await.unwrap();
    for _ in 0..2 {
        let found = f.store.token_by_hash(&token.hash).await.unwrap().unwrap();
        assert_eq!(found.revoked_at, None);
    }
    f.store
        .mark_token_verified("tok_cache", t(3), &[])
        .await
        .unwrap();
    let found = f.store.token_by_hash(&token.hash).await.unwrap().unwrap();
    assert_eq!(found.mfa_verified_at, Some(t(3)));
    let revoked = f.store.revoke_token("tok_cache", t(4), revoke_event).await;
    assert_eq!(revoked.unwrap().len(), 1);
    let found = f.store.token_by_hash(&token.hash).await.unwrap().unwrap();
    assert_eq!(
        found.revoked_at,
        Some(t(4)),
        "a revocation is seen by the next lookup"
    );

    // Changes to secrets alone keep what authorisation reads; any other change moves it.
    let other = api_token("tok_cache_2", "other", "member");
    f.store.insert_token(&other, &[]).await.unwrap();
    assert!(f.store.token_by_hash(&other.hash).await.unwrap().is_some());
    let access = f.store.access_generation();
    let data = f.store.data_generation();
    put(f, "cache/b", "one", Cas::None).await.unwrap();
    let metadata = MetadataUpdate {
        max_versions: None,
        cas_required: Some(false),
        custom_metadata: None,
    };
    f.store
        .update_metadata(&path("cache/b"), &metadata, t(5), &[])
        .await
        .unwrap();
    assert!(
        f.store
            .delete_versions(&path("cache/b"), &[1], t(5), &[])
            .await
            .unwrap()
    );
    assert!(f.store.delete_secret(&path("cache/b"), &[]).await.unwrap());
    assert_eq!(f.store.access_generation(), access);
    if let (Some(old), Some(new)) = (data, f.store.data_generation()) {
        assert!(new > old, "a change to a secret moves the data generation");
    }
    let found = f.store.token_by_hash(&other.hash).await.unwrap().unwrap();
    assert_eq!(found.revoked_at, None);
    let revoked = f
        .store
        .revoke_token("tok_cache_2", t(6), revoke_event)
        .await;
    assert_eq!(revoked.unwrap().len(), 1);
    if let (Some(old), Some(new)) = (access, f.store.access_generation()) {
        assert!(new > old, "a revocation moves the access generation");
    }
    let found = f.store.token_by_hash(&other.hash).await.unwrap().unwrap();
    assert_eq!(
        found.revoked_at,
        Some(t(6)),
        "a revocation after writes to secrets is seen by the next lookup"
    );

    // People as authorisation sees them: without credentials, and changed at once.
    let enrolled = PersonRecord {
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        totp_secret: Some(vec![1, 2, 3]),
        ..person_record("p_cache", None)
    };
    f.store
        .insert_person(&enrolled, &[4u8; 32], t(100), &[])
        .await
        .unwrap();
    let stored = f.store.person("p_cache").await.unwrap().unwrap();
    assert!(stored.password_hash.is_some() && stored.totp_secret.is_some());
    let acting = f.store.acting_person("p_cache").await.unwrap().unwrap();
    assert_eq!(
        (
            acting.password_hash,
            acting.totp_secret,
            acting.totp_last_step
        ),
        (None, None, None)
    );
    assert_eq!(acting.name, enrolled.name);
    put(f, "cache/c", "one", Cas::None).await.unwrap();
    let acting = f.store.acting_person("p_cache").await.unwrap().unwrap();
    assert_eq!(acting.disabled_at, None);
    assert!(
        f.store
            .set_person_disabled("p_cache", Some(t(7)), &[])
            .await
            .unwrap()
    );
    let acting = f.store.acting_person("p_cache").await.unwrap().unwrap();
    assert_eq!(
        acting.disabled_at,
        Some(t(7)),
        "a disabled person is seen as disabled by the next request"
    );
}

/// Failed-login counters are read by no cache: writing them empties none (a stream of
/// failed logins would otherwise send every request back to the database), and those older
/// than the window are removed.
async fn failed_attempts_keep_the_caches_and_old_ones_go(f: &Fixture) {
    let (data, access) = (f.store.data_generation(), f.store.access_generation());
    let subjects = vec!["user:mallory".to_owned()];
    f.store.record_auth_failure(&subjects, t(1)).await.unwrap();
    f.store.record_auth_failure(&subjects, t(5)).await.unwrap();
    // Two attempts at one instant: forgetting one leaves the other counted.
    f.store.record_auth_failure(&subjects, t(5)).await.unwrap();
    f.store.forget_auth_failure(&subjects, t(5)).await.unwrap();
    assert_eq!(
        f.store
            .auth_failures_since("user:mallory", t(0))
            .await
            .unwrap(),
        2
    );
    f.store.forget_auth_failure(&subjects, t(5)).await.unwrap();
    f.store.record_auth_failure(&subjects, t(6)).await.unwrap();
    assert_eq!(f.store.data_generation(), data);
    assert_eq!(f.store.access_generation(), access);
    assert_eq!(
        f.store
            .auth_failures_since("user:mallory", t(0))
            .await
            .unwrap(),
        2
    );
    assert_eq!(f.store.prune_auth_failures(t(6)).await.unwrap(), 1);
    assert_eq!(
        f.store
            .auth_failures_since("user:mallory", t(0))
            .await
            .unwrap(),
        1
    );
    assert_eq!(f.store.data_generation(), data);
    // Any other change still moves them.
    put(f, "cache/failures", "one", Cas::None).await.unwrap();
    if let (Some(old), Some(new)) = (data, f.store.data_generation()) {
        assert!(new > old);
    }
}

/// A maker's stored wrapped responses are held to a count and a size: those of another
/// maker do not count, expired ones do until they are removed; the tokens of no person
/// share one quota.
async fn wrapped_responses_are_held_to_their_makers_quota(f: &Fixture) {
    use chaperone_crypto::token::ApiToken;
    use chaperone_store::{WRAP_QUOTA, WrapQuota, WrappedRecord};
    let quota = Some(WrapQuota {
        count: 3,
        bytes: 100,
    });
    let made = std::sync::atomic::AtomicU32::new(0);
    let wrap = |by: Option<&str>, size: usize, expires: i64| WrappedRecord {
        hash: ApiToken::generate().hash(),
        accessor: format!(
            "wrap_q{}",
            made.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
        sealed: vec![7; size],
        creation_path: "secret/data/x".into(),
        created_at: t(10),
        expires_at: t(expires),
        created_by: by.map(str::to_owned),
        status: 200,
    };
    let insert = |record: WrappedRecord| async move {
        f.store.insert_wrapped(&record, &[], None, quota).await
    };
    let over = |result: Result<(), StoreError>| matches!(&result, Err(StoreError::Conflict(m)) if m.starts_with(WRAP_QUOTA));
    insert(wrap(Some("per_a"), 40, 100)).await.unwrap();
    insert(wrap(Some("per_a"), 40, 100)).await.unwrap();
    assert!(over(insert(wrap(Some("per_a"), 21, 100)).await), "bytes");
    // Expired, it counts until the sweep removes it.
    insert(wrap(Some("per_a"), 20, 11)).await.unwrap();
    assert!(over(insert(wrap(Some("per_a"), 1, 100)).await), "count");
    f.store
        .purge_expired_wrapped(t(12), 10, |_| Vec::new())
        .await
        .unwrap();
    insert(wrap(Some("per_a"), 20, 100)).await.unwrap();
    // Another person's, and the tokens of no person, have their own.
    for _ in 0..3 {
        insert(wrap(Some("per_b"), 30, 100)).await.unwrap();
        insert(wrap(None, 30, 100)).await.unwrap();
    }
    assert!(over(insert(wrap(None, 1, 100)).await));
    assert!(over(insert(wrap(Some("per_b"), 1, 100)).await));
}

/// Wrapped responses past their expiry are removed in bounds, with their events; the
/// unexpired stay.
async fn expired_wrapped_responses_are_purged(f: &Fixture) {
    use chaperone_crypto::token::ApiToken;
    use chaperone_store::WrappedRecord;
    let mut tokens = Vec::new();
    for (n, expires) in [(1, 10), (2, 11), (3, 12), (4, 100)] {
        let token = ApiToken::generate();
        f.store
            .insert_wrapped(
                &WrappedRecord {
                    hash: token.hash(),
                    accessor: format!("wrap_{n}"),
                    sealed: vec![1, 2, 3],
                    creation_path: "secret/data/x".into(),
                    created_at: t(1),
                    expires_at: t(expires),
                    created_by: None,
                    status: 200,
                },
                &[],
                None,
                None,
            )
            .await
            .unwrap();
        tokens.push(token);
    }
    let size = f.store.ledger_size().await.unwrap();
    let events = |accessors: &[String]| vec![event(&format!("wrap.expire {}", accessors.len()))];
    assert!(
        f.store
            .purge_expired_wrapped(t(5), 10, events)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        f.store.ledger_size().await.unwrap(),
        size,
        "nothing to record"
    );
    let mut first = f
        .store
        .purge_expired_wrapped(t(50), 2, events)
        .await
        .unwrap();
    first.sort();
    assert_eq!(
        first,
        ["wrap_1", "wrap_2"],
        "the oldest first, at most the limit"
    );
    let rest = f
        .store
        .purge_expired_wrapped(t(50), 2, events)
        .await
        .unwrap();
    assert_eq!(rest, ["wrap_3"]);
    assert_eq!(f.store.ledger_size().await.unwrap(), size + 2);
    assert!(
        f.store
            .wrapped(&tokens[3].hash(), t(50))
            .await
            .unwrap()
            .is_some()
    );
}
