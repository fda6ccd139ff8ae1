-- When a subject or before revocation was made. revocation_rules.revoked_at is its cut-off (every
-- token issued at or before it is refused), which for 'before' is the operator's time, hours back
-- when an incident is found late: listed as when it was made, and ordered by it, a revocation made
-- a minute ago read as hours old and could fall out of the newest shown. Nullable, so rows written
-- before (and by a process not yet upgraded) list their cut-off as before.
ALTER TABLE revocation_rules ADD COLUMN recorded_at timestamptz;
CREATE INDEX revocation_rules_recorded_at_idx ON revocation_rules (recorded_at);
