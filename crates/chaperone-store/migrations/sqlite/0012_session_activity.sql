-- When a login session was last used, to the minute: a session idle for longer than the
-- server's `session_idle` ends. None until its first minute of use has passed. Sessions
-- live at the upgrade count as used at that moment, so that the upgrade ends none in use.
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;
UPDATE tokens SET last_used_at = CAST((julianday('now') - 2440587.5) * 86400000000000 AS INTEGER)
WHERE kind = 'session' AND revoked_at IS NULL;
