-- +goose Up
-- A tenant is a customer of the gateway: one callback URL, its forwarding
-- limits and its Standard Webhooks signing secret (encrypted; the previous
-- one keeps signing until previous_signing_secret_expires_at).
CREATE TABLE tenants (
    id                                  uuid PRIMARY KEY,
    name                                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    callback_url                        text NOT NULL,
    events                              text[] NOT NULL DEFAULT '{}',
    rate                                integer CHECK (rate > 0),
    burst                               integer CHECK (burst > 0),
    concurrency                         integer CHECK (concurrency > 0),
    deliver_test_events                 boolean NOT NULL DEFAULT true,
    endpoint_disabled_at                timestamptz,
    endpoint_disabled_reason            text,
    signing_secret                      bytea NOT NULL,
    previous_signing_secret             bytea,
    previous_signing_secret_expires_at  timestamptz,
    created_at                          timestamptz NOT NULL DEFAULT now(),
    updated_at                          timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE tenants;
