-- The ledger: entries by sequence number, and the hashes of every complete subtree of the
-- RFC 9162 tree (level, index), from which tlog tiles and proofs are read.
CREATE TABLE ledger_entries (
    seq  BIGINT PRIMARY KEY,
    body BYTEA    NOT NULL
);

CREATE TABLE ledger_hashes (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA    NOT NULL,
    PRIMARY KEY (level, idx)
);

-- The tree size; the row is the lock that orders appends.
CREATE TABLE ledger_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL
);
INSERT INTO ledger_head (id, size) VALUES (1, 0);
