-- The stale-claim sweep also re-takes documents stuck between steps, by the time of their last change.
CREATE INDEX documents_between_steps_updated_idx ON documents (updated_at) WHERE status IN ('extracted', 'validated');
