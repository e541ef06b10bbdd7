-- What one person holds of API tokens is bounded (checked as each is made): the check
-- counts their tokens by this index.
CREATE INDEX tokens_by_person ON tokens (person_id, kind);
