-- The ledger: entries by sequence number, and the hashes of every complete subtree of the
-- RFC 9162 tree (level, index), from which tlog tiles and proofs are read.
CREATE TABLE ledger_entries (
    seq  INTEGER PRIMARY KEY,
    body BLOB    NOT NULL
);

CREATE TABLE ledger_hashes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
);

-- The tree size; the row is the lock that orders appends.
CREATE TABLE ledger_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL
);
INSERT INTO ledger_head (id, size) VALUES (1, 0);
