-- The token a token was made from through the Vault API (`auth/token/create`), as Vault's
-- token tree: revoking a token revokes every token made from it, so revoking a leaked or
-- ended session also ends what was made with it. None for an orphan: every token made
-- before this version, logins, and tokens made through the native API.
ALTER TABLE tokens ADD COLUMN parent_id TEXT REFERENCES tokens (id);
CREATE INDEX tokens_by_parent ON tokens (parent_id);
