-- Vault response wrapping: a response sealed under the keyring, handed out once to whoever
-- holds the wrapping token (stored hashed, like every token).
CREATE TABLE wrapped_responses (
    token_hash    BLOB PRIMARY KEY,
    accessor      TEXT NOT NULL UNIQUE,
    sealed        BLOB NOT NULL,
    creation_path TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
