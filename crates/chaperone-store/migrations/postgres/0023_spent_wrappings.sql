-- What is left of a wrapping once it is unwrapped, revoked or refused: its token's hash,
-- until the wrapping would have expired. A later unwrap with the same token is then told
-- apart from one with a token never made, and recorded: the recipient of a wrapping that
-- someone else unwrapped first leaves a trace, as with a used share link.
CREATE TABLE spent_wrappings (
    token_hash    BYTEA PRIMARY KEY,
    accessor      TEXT NOT NULL,
    creation_path TEXT NOT NULL,
    why           TEXT NOT NULL,
    spent_at      BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX spent_wrappings_by_expiry ON spent_wrappings (expires_at);
