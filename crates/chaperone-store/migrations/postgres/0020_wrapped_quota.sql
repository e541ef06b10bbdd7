-- What one person keeps wrapped is bounded (count and bytes, checked as each response is
-- wrapped): the check reads their live wrapped responses by this index.
CREATE INDEX wrapped_responses_by_creator ON wrapped_responses (created_by, expires_at);
