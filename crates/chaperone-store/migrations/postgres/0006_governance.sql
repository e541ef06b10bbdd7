-- Third-party governance.

-- A vendor's profile (legal name, identifiers, country, contacts, accountable owner,
-- criticality, data locations, needed functions/ports/protocols, parent vendor), as JSON.
ALTER TABLE vendors ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';

-- Governance records: agreements, evidence, policy documents and acknowledgements, level
-- policies, access requests, review campaigns, vendor status history and notifications.
-- What queries select on is a column (kind, owner); the rest of a record is its JSON body.
-- `revision` makes read-modify-write safe: an update names the revision it read.
CREATE TABLE records (
    kind       TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    owner      TEXT,
    body       TEXT    NOT NULL,
    revision   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX records_owner ON records (kind, owner);

-- Signed agreements and evidence documents, sealed under the keyring, with the SHA-256 of
-- the plaintext.
CREATE TABLE documents (
    id         TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    media_type TEXT    NOT NULL,
    size       BIGINT NOT NULL,
    sha256     TEXT    NOT NULL,
    sealed     BYTEA    NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX documents_owner ON documents (owner);

-- Where a grant came from: an approved request, or break-glass (flagged for review).
ALTER TABLE grants ADD COLUMN request_id TEXT;
ALTER TABLE grants ADD COLUMN break_glass BIGINT NOT NULL DEFAULT 0;
ALTER TABLE grants ADD COLUMN reason TEXT;
ALTER TABLE grants ADD COLUMN reviewed_at BIGINT;
ALTER TABLE grants ADD COLUMN reviewed_by TEXT;
