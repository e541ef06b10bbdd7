-- When a login session was last used, to the minute: a session idle for longer than the
-- server's `session_idle` ends. None until its first minute of use has passed.
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;
