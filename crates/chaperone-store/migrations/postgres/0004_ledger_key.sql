-- The ledger's signing key (an Ed25519 seed encrypted under the keyring) and its origin.
CREATE TABLE ledger_key (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    origin      TEXT    NOT NULL,
    sealed_seed BYTEA    NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Every checkpoint handed out, by size: a later one must be consistent with all of them.
CREATE TABLE ledger_checkpoints (
    size       BIGINT PRIMARY KEY,
    note       TEXT    NOT NULL,
    created_at BIGINT NOT NULL
);
