-- Keyring: the root key, wrapped under the unseal key. One row.
CREATE TABLE keyring (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    wrapped_root_key BLOB    NOT NULL,
    seal_kind        TEXT    NOT NULL,
    shares           INTEGER NOT NULL,
    threshold        INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);

-- API tokens, stored only as SHA-256 hashes.
CREATE TABLE tokens (
    id         TEXT    PRIMARY KEY,
    token_hash BLOB    NOT NULL UNIQUE,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

-- Secrets. AUTOINCREMENT: an id is never reused, so a ciphertext bound to a deleted
-- secret's id can never open under a new secret.
CREATE TABLE secrets (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    path            TEXT    NOT NULL UNIQUE,
    current_version INTEGER NOT NULL,
    oldest_version  INTEGER NOT NULL,
    max_versions    INTEGER NOT NULL,
    cas_required    INTEGER NOT NULL,
    custom_metadata TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE secret_versions (
    secret_id    INTEGER NOT NULL REFERENCES secrets (id),
    version      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    deleted_at   INTEGER,
    destroyed_at INTEGER,
    wrapped_key  BLOB,
    ciphertext   BLOB,
    PRIMARY KEY (secret_id, version)
);
