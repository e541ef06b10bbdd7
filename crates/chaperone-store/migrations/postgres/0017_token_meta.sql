-- Labels a token was made with (Vault's token `meta`), as a JSON object of strings; NULL
-- for none. Not secret: shown by a lookup to whoever may see the token.
ALTER TABLE tokens ADD COLUMN meta TEXT;
