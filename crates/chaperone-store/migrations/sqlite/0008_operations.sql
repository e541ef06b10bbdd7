-- The ledger's verifier key (public, `name+hash+key`), so that a backup carries it and a
-- restore checks the checkpoints' signatures without unsealing.
ALTER TABLE ledger_key ADD COLUMN verifier TEXT;

-- Key-encryption-key generations: new keys are wrapped under `kek_generation`; every stored
-- key is wrapped under `rewrapped_generation` or later.
ALTER TABLE keyring ADD COLUMN kek_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE keyring ADD COLUMN rewrapped_generation INTEGER NOT NULL DEFAULT 0;
