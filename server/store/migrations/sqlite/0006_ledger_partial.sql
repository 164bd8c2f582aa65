-- Outcomes scored horizon by horizon, each as its own window closes (issue 16): `partial` is 1
-- while some of an entry's windows are still open (the entry is scored again once they close),
-- 0 once its outcome is complete. Every outcome written before this was complete.
ALTER TABLE ledger ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;
