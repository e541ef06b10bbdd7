-- The last, partial entry bundle as the chunks that batches appended, one row per batch:
-- rewriting the whole growing bundle at every commit made each commit write up to 256
-- entries to add a few. A bundle that fills is written whole to `ledger_bundles` and its
-- chunks are deleted in the same transaction. A partial bundle is the `ledger_bundles` row
-- (if any, as older versions wrote it) followed by the chunks from its width on.
CREATE TABLE ledger_bundle_chunks (
    idx   BIGINT  NOT NULL,
    first BIGINT  NOT NULL,
    width BIGINT  NOT NULL,
    data  BYTEA   NOT NULL,
    PRIMARY KEY (idx, first)
);
