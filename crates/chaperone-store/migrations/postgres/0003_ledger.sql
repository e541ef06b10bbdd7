-- The ledger as C2SP tlog-tiles: hash tiles by (tile level, index) and entry bundles by
-- index, each row holding the widest version written so far (a partial tile grows until it
-- is full; its first items never change). Proofs read O(log n) tiles.
CREATE TABLE ledger_tiles (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    width BIGINT NOT NULL,
    data  BYTEA    NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE ledger_bundles (
    idx   BIGINT PRIMARY KEY,
    width BIGINT NOT NULL,
    data  BYTEA    NOT NULL
);

-- The tree size; the row is the lock that orders appends.
CREATE TABLE ledger_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL
);
INSERT INTO ledger_head (id, size) VALUES (1, 0);
