-- How many times a secret's metadata was written (Vault's `current_metadata_version`): 0
-- until the first metadata write, then one more for each.
ALTER TABLE secrets ADD COLUMN metadata_version INTEGER NOT NULL DEFAULT 0;
