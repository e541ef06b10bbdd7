-- Safe hand-off and clean exit.

-- A contractor account's own end date: past it, the account acts no more.
ALTER TABLE people ADD COLUMN ends_at INTEGER;

-- One-time share links. The content is encrypted by the creator's client with a key that
-- exists only in the link's URL fragment: this table holds ciphertext the server cannot
-- open. `content` is set to NULL when the share is used up, expired or revoked.
CREATE TABLE shares (
    id              TEXT    PRIMARY KEY,
    created_by      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    max_views       INTEGER NOT NULL,
    views           INTEGER NOT NULL,
    passphrase_hash TEXT,
    proof_hash      TEXT    NOT NULL,
    restricted_to   TEXT,
    label           TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    content         BLOB,
    destroyed_at    INTEGER,
    destroyed_why   TEXT
);
CREATE INDEX shares_expiry ON shares (expires_at);
