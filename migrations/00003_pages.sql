-- +goose Up
-- A Page (or Instagram professional account) registered for one app. A Page
-- may be registered for several apps, each (Page, app) once. The foreign key
-- on (tenant_id, app_id) makes it impossible to hang a Page on an app of
-- another tenant.
CREATE TABLE pages (
    page_id     text NOT NULL CHECK (page_id ~ '^[0-9]{1,20}$'),
    app_id      text NOT NULL,
    tenant_id   uuid NOT NULL,
    object      text NOT NULL DEFAULT 'page' CHECK (object IN ('page', 'instagram')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (page_id, app_id),
    CONSTRAINT pages_app_fkey FOREIGN KEY (tenant_id, app_id)
        REFERENCES apps (tenant_id, app_id) ON DELETE CASCADE
);
CREATE INDEX pages_tenant_idx ON pages (tenant_id, page_id, app_id);

-- +goose Down
DROP TABLE pages;
