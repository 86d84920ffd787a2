-- A pending consent the user approved: the SHA-256 of the `state` sent to the provider and of
-- the browser cookie that approved it. The callback must bring both back (docs/consent.md).
ALTER TABLE vault_pending ADD COLUMN state_digest TEXT;
ALTER TABLE vault_pending ADD COLUMN browser_digest TEXT;
CREATE UNIQUE INDEX vault_pending_by_state ON vault_pending (state_digest);
