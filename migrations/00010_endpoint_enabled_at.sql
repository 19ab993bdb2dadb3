-- +goose Up
-- When the tenant's endpoint was last re-enabled (after a 410 or an
-- operator's pause). Every delivery worker reads it through the registry:
-- a change resets the endpoint's circuit breaker, and the expiry of a
-- failing endpoint's backlog counts from it, so events replayed right
-- after a re-enable get their attempts.
ALTER TABLE tenants ADD COLUMN endpoint_enabled_at timestamptz;

-- +goose Down
ALTER TABLE tenants DROP COLUMN endpoint_enabled_at;
