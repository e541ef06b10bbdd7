-- Vault response wrapping: a response sealed under the keyring, handed out once to whoever
-- holds the wrapping token (stored hashed, like every token).
CREATE TABLE wrapped_responses (
    token_hash    BYTEA PRIMARY KEY,
    accessor      TEXT NOT NULL UNIQUE,
    sealed        BYTEA NOT NULL,
    creation_path TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
