-- The HTTP status of each wrapped response, handed back with it at unwrap: a Vault read of
-- a deleted or destroyed version is a 404 with a full envelope, and OpenBao wraps it as
-- such. Responses wrapped before this version were all 200.
ALTER TABLE wrapped_responses ADD COLUMN status BIGINT NOT NULL DEFAULT 200;
