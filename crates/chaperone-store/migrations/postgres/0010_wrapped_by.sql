-- Who wrapped each response (a person's id; none for tokens of no person): unwrapping acts
-- for them, so a response wrapped by someone since disabled or offboarded, or whose vendor
-- no longer admits them, is not handed out. Responses wrapped before this version have none.
ALTER TABLE wrapped_responses ADD COLUMN created_by TEXT;
