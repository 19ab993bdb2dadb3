-- +goose Up
-- Bodies that were correctly signed by a tenant's app but could not be
-- parsed as Meta's webhook shape. Kept so nothing signed is lost silently;
-- listed through the admin API.
CREATE TABLE quarantine (
    id           uuid NOT NULL,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    app_id       text NOT NULL,
    reason       text NOT NULL,
    body         bytea NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX quarantine_tenant_received_idx ON quarantine (tenant_id, received_at, id);

-- +goose Down
DROP TABLE quarantine;
