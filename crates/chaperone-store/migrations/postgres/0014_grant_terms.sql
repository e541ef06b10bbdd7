-- What a grant (or its latest extension) was approved with: how many people approved it and
-- for how long. The policy holds the grant to them at every request, so a path classified
-- stricter after the approval is not reached by it. NULL for break-glass grants and for
-- grants made before this was kept.
ALTER TABLE grants ADD COLUMN approvals BIGINT;
ALTER TABLE grants ADD COLUMN term_secs BIGINT;
