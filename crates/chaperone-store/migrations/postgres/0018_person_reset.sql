-- Who last reset each account's credentials (a person id; NULL when never reset, or reset
-- by the initial admin token): they were handed its enrolment code, as its creator was, and
-- do not approve its requests either.
ALTER TABLE people ADD COLUMN reset_by TEXT;
