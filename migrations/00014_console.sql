-- +goose Up
-- The console's sign-ins (package session). A session is a random token in
-- an HttpOnly cookie; only its SHA-256 is stored, so a copy of this table
-- signs nobody in. A link (console-link, portal-links) is the same: its
-- hash, its role, and used_at once it has signed someone in (once).
CREATE TABLE console_sessions (
    id          bytea PRIMARY KEY,
    role        text NOT NULL CHECK (role IN ('admin', 'tenant')),
    tenant_id   uuid REFERENCES tenants (id) ON DELETE CASCADE,
    subject     text NOT NULL,
    csrf        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CHECK ((role = 'tenant') = (tenant_id IS NOT NULL))
);
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);

CREATE TABLE console_links (
    id          bytea PRIMARY KEY,
    role        text NOT NULL CHECK (role IN ('admin', 'tenant')),
    tenant_id   uuid REFERENCES tenants (id) ON DELETE CASCADE,
    subject     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CHECK ((role = 'tenant') = (tenant_id IS NOT NULL))
);
CREATE INDEX console_links_expires_idx ON console_links (expires_at);

-- +goose Down
DROP TABLE console_links;
DROP TABLE console_sessions;
