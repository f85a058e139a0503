-- Retention looks for rows by age (src/db/retention.rs). Without these, each
-- purge run reads the whole of `notifications` and `idempotency_keys` even
-- when nothing has aged out; with them it reads a few index pages. The cost
-- is one more btree insert per row written, at the right-hand edge of the
-- index (the key only grows). RELIABILITY.md has the measurements.
CREATE INDEX notifications_created_at ON notifications (created_at);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
