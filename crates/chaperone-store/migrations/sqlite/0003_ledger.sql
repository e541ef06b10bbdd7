-- The ledger as C2SP tlog-tiles: hash tiles by (tile level, index) and entry bundles by
-- index, each row holding the widest version written so far (a partial tile grows until it
-- is full; its first items never change). Proofs read O(log n) tiles.
CREATE TABLE ledger_tiles (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    width INTEGER NOT NULL,
    data  BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE ledger_bundles (
    idx   INTEGER PRIMARY KEY,
    width INTEGER NOT NULL,
    data  BLOB    NOT NULL
);

-- The tree size; the row is the lock that orders appends.
CREATE TABLE ledger_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL
);
INSERT INTO ledger_head (id, size) VALUES (1, 0);
