-- Vendors (minimal record; the governance model extends it).
CREATE TABLE vendors (
    id               TEXT    PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE,
    status           TEXT    NOT NULL,
    allowed_networks TEXT    NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

-- People: internal staff and contractors.
CREATE TABLE people (
    id               TEXT    PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE,
    email            TEXT,
    role             TEXT    NOT NULL,
    vendor_id        TEXT    REFERENCES vendors (id),
    disabled_at      BIGINT,
    password_hash    TEXT,
    totp_secret      BYTEA,
    totp_last_step   BIGINT,
    allowed_networks TEXT    NOT NULL,
    created_at       BIGINT NOT NULL
);

-- One-time enrolment codes, stored as SHA-256.
CREATE TABLE enrolments (
    code_hash  BYTEA    PRIMARY KEY,
    person_id  TEXT    NOT NULL REFERENCES people (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

-- Single-use recovery codes, stored as SHA-256.
CREATE TABLE recovery_codes (
    person_id TEXT    NOT NULL REFERENCES people (id),
    code_hash BYTEA    NOT NULL,
    used_at   BIGINT,
    PRIMARY KEY (person_id, code_hash)
);

-- Grants: capabilities on a path prefix until a time.
CREATE TABLE grants (
    id           TEXT    PRIMARY KEY,
    person_id    TEXT    NOT NULL REFERENCES people (id),
    prefix       TEXT    NOT NULL,
    capabilities TEXT    NOT NULL,
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT    NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX grants_person ON grants (person_id);

-- Path classification: longest matching prefix wins; unclassified paths are `internal`.
CREATE TABLE classifications (
    prefix     TEXT    PRIMARY KEY,
    level      TEXT    NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Failed authentication attempts per subject (`account:NAME`, `ip:ADDR`).
CREATE TABLE auth_failures (
    subject TEXT    NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX auth_failures_subject ON auth_failures (subject, at);

-- Tokens now belong to people, are API tokens or sessions, may carry a scope, and remember
-- the session's last TOTP verification (for step-up).
ALTER TABLE tokens ADD COLUMN person_id TEXT REFERENCES people (id);
ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api';
ALTER TABLE tokens ADD COLUMN scope TEXT;
ALTER TABLE tokens ADD COLUMN mfa_verified_at BIGINT;
