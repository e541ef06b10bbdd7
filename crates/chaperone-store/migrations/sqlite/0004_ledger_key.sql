-- The ledger's signing key (an Ed25519 seed encrypted under the keyring) and its origin.
CREATE TABLE ledger_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    origin      TEXT    NOT NULL,
    sealed_seed BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Every checkpoint handed out, by size: a later one must be consistent with all of them.
CREATE TABLE ledger_checkpoints (
    size       INTEGER PRIMARY KEY,
    note       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
