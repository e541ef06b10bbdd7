-- Keyring: the root key, wrapped under the unseal key. One row.
CREATE TABLE keyring (
    id               BIGINT PRIMARY KEY CHECK (id = 1),
    wrapped_root_key BYTEA  NOT NULL,
    seal_kind        TEXT   NOT NULL,
    shares           BIGINT NOT NULL,
    threshold        BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);

-- API tokens, stored only as SHA-256 hashes.
CREATE TABLE tokens (
    id         TEXT   PRIMARY KEY,
    token_hash BYTEA  NOT NULL UNIQUE,
    name       TEXT   NOT NULL,
    role       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

-- Secrets. An identity column never reuses an id, so a ciphertext bound to a deleted
-- secret's id can never open under a new secret.
CREATE TABLE secrets (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path            TEXT   NOT NULL UNIQUE,
    current_version BIGINT NOT NULL,
    oldest_version  BIGINT NOT NULL,
    max_versions    BIGINT NOT NULL,
    cas_required    BIGINT NOT NULL,
    custom_metadata TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE secret_versions (
    secret_id    BIGINT NOT NULL REFERENCES secrets (id),
    version      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    deleted_at   BIGINT,
    destroyed_at BIGINT,
    wrapped_key  BYTEA,
    ciphertext   BYTEA,
    PRIMARY KEY (secret_id, version)
);
