-- Who created each account (a person id; NULL for the initial admin token and for accounts
-- made before this was kept): whoever made an account does not approve its requests.
ALTER TABLE people ADD COLUMN created_by TEXT;
