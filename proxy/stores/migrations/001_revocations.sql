-- Token revocation, durable. A revocation is acknowledged only once its row is committed here.
-- revoked_tokens is the seed's table (one row per revoked jti); revocation_rules holds the two
-- kinds that match many tokens: every token of a subject, or every token, issued at or before
-- revoked_at. Rows are deleted once expires_at has passed: by then every token they match has
-- expired anyway.
CREATE TABLE revoked_tokens (
  jti text PRIMARY KEY,
  revoked_at timestamptz NOT NULL DEFAULT now(),
  revoked_by text NOT NULL,
  reason text,
  expires_at timestamptz NOT NULL
);
CREATE INDEX revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);
CREATE INDEX revoked_tokens_revoked_at_idx ON revoked_tokens (revoked_at);

CREATE TABLE revocation_rules (
  id bigserial PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('subject', 'before')),
  subject text,
  revoked_at timestamptz NOT NULL,
  revoked_by text NOT NULL,
  reason text,
  expires_at timestamptz NOT NULL,
  CHECK ((kind = 'subject') = (subject IS NOT NULL))
);
CREATE INDEX revocation_rules_expires_at_idx ON revocation_rules (expires_at);
CREATE INDEX revocation_rules_revoked_at_idx ON revocation_rules (revoked_at);
