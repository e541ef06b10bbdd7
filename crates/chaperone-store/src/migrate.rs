//! Schema migrations, embedded in the binary, applied in order at connect.
//!
//! Each migration runs in its own transaction together with the insert that records it. The
//! insert comes first and uses `ON CONFLICT DO NOTHING`: on PostgreSQL a second node
//! migrating at the same moment waits on the unique key and then sees the row; on SQLite the
//! insert takes the write lock. Either way each migration is applied exactly once.

use crate::{Backend, Store, StoreError, db};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "identity",
        sqlite: include_str!("../migrations/sqlite/0002_identity.sql"),
        postgres: include_str!("../migrations/postgres/0002_identity.sql"),
    },
    Migration {
        version: 3,
        name: "ledger",
        sqlite: include_str!("../migrations/sqlite/0003_ledger.sql"),
        postgres: include_str!("../migrations/postgres/0003_ledger.sql"),
    },
    Migration {
        version: 4,
        name: "ledger key",
        sqlite: include_str!("../migrations/sqlite/0004_ledger_key.sql"),
        postgres: include_str!("../migrations/postgres/0004_ledger_key.sql"),
    },
    Migration {
        version: 5,
        name: "response wrapping",
        sqlite: include_str!("../migrations/sqlite/0005_wrapping.sql"),
        postgres: include_str!("../migrations/postgres/0005_wrapping.sql"),
    },
    Migration {
        version: 6,
        name: "governance",
        sqlite: include_str!("../migrations/sqlite/0006_governance.sql"),
        postgres: include_str!("../migrations/postgres/0006_governance.sql"),
    },
    Migration {
        version: 7,
        name: "hand-off",
        sqlite: include_str!("../migrations/sqlite/0007_handoff.sql"),
        postgres: include_str!("../migrations/postgres/0007_handoff.sql"),
    },
    Migration {
        version: 8,
        name: "operations",
        sqlite: include_str!("../migrations/sqlite/0008_operations.sql"),
        postgres: include_str!("../migrations/postgres/0008_operations.sql"),
    },
    Migration {
        version: 9,
        name: "bundle chunks",
        sqlite: include_str!("../migrations/sqlite/0009_bundle_chunks.sql"),
        postgres: include_str!("../migrations/postgres/0009_bundle_chunks.sql"),
    },
    Migration {
        version: 10,
        name: "wrapped by",
        sqlite: include_str!("../migrations/sqlite/0010_wrapped_by.sql"),
        postgres: include_str!("../migrations/postgres/0010_wrapped_by.sql"),
    },
    Migration {
        version: 11,
        name: "token parent",
        sqlite: include_str!("../migrations/sqlite/0011_token_parent.sql"),
        postgres: include_str!("../migrations/postgres/0011_token_parent.sql"),
    },
    Migration {
        version: 12,
        name: "session activity",
        sqlite: include_str!("../migrations/sqlite/0012_session_activity.sql"),
        postgres: include_str!("../migrations/postgres/0012_session_activity.sql"),
    },
    Migration {
        version: 13,
        name: "person creator",
        sqlite: include_str!("../migrations/sqlite/0013_person_creator.sql"),
        postgres: include_str!("../migrations/postgres/0013_person_creator.sql"),
    },
    Migration {
        version: 14,
        name: "grant terms",
        sqlite: include_str!("../migrations/sqlite/0014_grant_terms.sql"),
        postgres: include_str!("../migrations/postgres/0014_grant_terms.sql"),
    },
    Migration {
        version: 15,
        name: "share digests",
        sqlite: include_str!("../migrations/sqlite/0015_share_digests.sql"),
        postgres: include_str!("../migrations/postgres/0015_share_digests.sql"),
    },
    Migration {
        version: 16,
        name: "metadata version",
        sqlite: include_str!("../migrations/sqlite/0016_metadata_version.sql"),
        postgres: include_str!("../migrations/postgres/0016_metadata_version.sql"),
    },
    Migration {
        version: 17,
        name: "token meta",
        sqlite: include_str!("../migrations/sqlite/0017_token_meta.sql"),
        postgres: include_str!("../migrations/postgres/0017_token_meta.sql"),
    },
    Migration {
        version: 18,
        name: "person reset",
        sqlite: include_str!("../migrations/sqlite/0018_person_reset.sql"),
        postgres: include_str!("../migrations/postgres/0018_person_reset.sql"),
    },
    Migration {
        version: 19,
        name: "wrapped status",
        sqlite: include_str!("../migrations/sqlite/0019_wrapped_status.sql"),
        postgres: include_str!("../migrations/postgres/0019_wrapped_status.sql"),
    },
    Migration {
        version: 20,
        name: "wrapped quota",
        sqlite: include_str!("../migrations/sqlite/0020_wrapped_quota.sql"),
        postgres: include_str!("../migrations/postgres/0020_wrapped_quota.sql"),
    },
    Migration {
        version: 21,
        name: "tokens by person",
        sqlite: include_str!("../migrations/sqlite/0021_tokens_by_person.sql"),
        postgres: include_str!("../migrations/postgres/0021_tokens_by_person.sql"),
    },
    Migration {
        version: 22,
        name: "login networks",
        sqlite: include_str!("../migrations/sqlite/0022_login_networks.sql"),
        postgres: include_str!("../migrations/postgres/0022_login_networks.sql"),
    },
    Migration {
        version: 23,
        name: "spent wrappings",
        sqlite: include_str!("../migrations/sqlite/0023_spent_wrappings.sql"),
        postgres: include_str!("../migrations/postgres/0023_spent_wrappings.sql"),
    },
];

/// Checks that the database's schema is exactly the one this binary knows.
pub(crate) async fn check(store: &Store) -> Result<(), StoreError> {
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM chaperone_migrations")
        .fetch_one(&store.pool)
        .await
        .map_err(db("reading the schema version"))?;
    match found {
        Some(found) if found > known => Err(StoreError::SchemaTooNew { found, known }),
        Some(found) if found == known => Ok(()),
        _ => Err(StoreError::Unsupported(
            "the database's schema is older than this binary's: start the server of this \
             version on it once (it migrates), then back it up",
        )),
    }
}

/// Lifts the session's `lock_timeout` for one migration transaction: a node started while
/// another applies a long migration waits for it to commit (on the migration's row), rather
/// than failing to start.
async fn wait_for_locks(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), StoreError> {
    sqlx::query("SET LOCAL lock_timeout = 0")
        .execute(&mut **tx)
        .await
        .map_err(db("starting a migration"))?;
    Ok(())
}

/// The PostgreSQL advisory lock under which the migrations table is created.
const CREATE_LOCK: i64 = 0x6368_6170_6572_6f6e; // "chaperon"

pub(crate) async fn run(store: &Store) -> Result<(), StoreError> {
    let mut tx = store
        .writer
        .begin()
        .await
        .map_err(db("starting a migration"))?;
    if store.backend == Backend::Postgres {
        wait_for_locks(&mut tx).await?;
        // Nodes started together on an empty database would each find no table and create
        // it, and all but one would fail on PostgreSQL's catalogue (`CREATE TABLE IF NOT
        // EXISTS` is not safe against itself): they take turns, until this commit.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CREATE_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db("waiting for other nodes' migrations"))?;
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS chaperone_migrations \
         (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .map_err(db("creating the migrations table"))?;
    tx.commit()
        .await
        .map_err(db("creating the migrations table"))?;

    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM chaperone_migrations")
        .fetch_one(&store.writer)
        .await
        .map_err(db("reading the schema version"))?;
    if let Some(found) = found.filter(|&f| f > known) {
        return Err(StoreError::SchemaTooNew { found, known });
    }

    for migration in MIGRATIONS {
        let mut tx = store
            .writer
            .begin()
            .await
            .map_err(db("starting a migration"))?;
        if store.backend == Backend::Postgres {
            wait_for_locks(&mut tx).await?;
        }
        let claimed = sqlx::query(
            "INSERT INTO chaperone_migrations (version, name) VALUES ($1, $2) \
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(migration.version)
        .bind(migration.name)
        .execute(&mut *tx)
        .await
        .map_err(db("recording a migration"))?
        .rows_affected();
        if claimed == 0 {
            continue;
        }
        let sql = match store.backend {
            Backend::Sqlite => migration.sqlite,
            Backend::Postgres => migration.postgres,
        };
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(db("applying a migration"))?;
        tx.commit().await.map_err(db("committing a migration"))?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
    }
    Ok(())
}
