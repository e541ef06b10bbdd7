-- A digest of each unseal share (a JSON list of hex SHA-256, by share index), so that a
-- share that is not one of the server's own is refused before it joins the unseal progress.
-- NULL for a key-file seal and for keyrings stored before this was kept.
ALTER TABLE keyring ADD COLUMN share_digests TEXT;
