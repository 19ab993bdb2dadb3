-- +goose Up
-- A Meta app belongs to exactly one tenant. Its secret signs Meta's
-- webhooks; it is stored encrypted and never returned. During a rotation
-- the previous secret stays valid until previous_secret_expires_at.
CREATE TABLE apps (
    app_id                      text PRIMARY KEY CHECK (app_id ~ '^[0-9]{1,20}$'),
    tenant_id                   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    secret                      bytea NOT NULL,
    previous_secret             bytea,
    previous_secret_expires_at  timestamptz,
    verify_token                text NOT NULL,
    legacy_sha1                 boolean NOT NULL DEFAULT false,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT apps_tenant_app_key UNIQUE (tenant_id, app_id),
    CONSTRAINT apps_verify_token_key UNIQUE (verify_token)
);

-- +goose Down
DROP TABLE apps;
